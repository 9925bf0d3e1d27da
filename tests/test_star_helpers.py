"""Shared builders for the STAR tests: random workflows, markets and a brute-force oracle."""

from __future__ import annotations

import itertools

import numpy as np

from mercato.mechanisms.myerson import UniformPrior, VirtualCost
from mercato.mechanisms.workflow import Agent, Node, Workflow, WorkflowMarket


def random_workflow(rng: np.random.Generator, n: int, density: float = 0.4, tree: bool = False) -> Workflow:
    """A random DAG (or, with ``tree``, a random tree with edges pointing away from node 0)."""
    nodes = [Node(f"n{k}", int(rng.integers(1, 4)), float(rng.uniform(0, 100)), float(rng.uniform(1, 100)))
             for k in range(n)]
    if tree:
        links = [(f"n{int(rng.integers(0, v))}", f"n{v}", None) for v in range(1, n)]
    else:
        links = [(f"n{u}", f"n{v}", None) for v in range(1, n) for u in range(v) if rng.random() < density]
    return Workflow.from_links(nodes, links)


def random_agents(rng: np.random.Generator, tiers: tuple[int, ...] = (1, 1, 2, 2, 3, 3)) -> list[Agent]:
    """Agents with random input ratios and cache discounts, one per tier given."""
    return [Agent(f"a{k}", t, float(rng.uniform(0.1, 0.6)), float(rng.choice([0.0, rng.uniform(0, 0.5)])))
            for k, t in enumerate(tiers)]


def random_priors(rng: np.random.Generator, m: int) -> tuple[np.ndarray, list[VirtualCost]]:
    """Uniform priors [low, high] per agent and true costs drawn from them."""
    low = rng.uniform(0.1, 1.0, m)
    high = low + rng.uniform(0.5, 3.0, m)
    vcs = [VirtualCost(UniformPrior(lo, hi)) for lo, hi in zip(low, high, strict=True)]
    return rng.uniform(low, high), vcs


def brute_force(market: WorkflowMarket, phi: np.ndarray) -> float:
    """Minimum objective over every capable assignment."""
    choices = [np.flatnonzero(market.capable[v]) for v in range(market.n_nodes)]
    return min(market.objective(np.array(a), phi) for a in itertools.product(*choices))
