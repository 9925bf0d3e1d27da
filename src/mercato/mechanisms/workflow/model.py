"""The workflow being procured and the agents bidding for it, validated on construction.

A workflow is a DAG of sub-tasks (nodes) joined by context transfers (edges). Each node has a
difficulty 1-3 and expected input/output token counts; each edge carries ``tokens`` of the
source's output into the target's input. Whatever part of a node's input no edge carries is
*external* (the user's prompt, retrieved documents) and is always read as fresh input.

An agent may serve a node iff its tier is at least the node's difficulty (and, when the node
names its allowed agents, it is one of them). Bad input raises ValueError naming the node,
edge or field at fault, because these objects come straight from users' YAML files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np
from numpy.typing import NDArray

# Relative slack when comparing token sums, so float rounding of split inputs is not an error.
_TOKEN_RTOL = 1e-9


def _tokens(owner: str, field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{owner}: {field} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Node:
    """One sub-task: its difficulty (1-3) and expected token counts."""

    name: str
    difficulty: int
    input_tokens: float
    output_tokens: float
    role: str = ""
    allowed_agents: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"node name must be a non-empty string, got {self.name!r}")
        if isinstance(self.difficulty, bool) or not isinstance(self.difficulty, int) \
                or self.difficulty not in (1, 2, 3):
            raise ValueError(f"node '{self.name}': difficulty must be 1, 2 or 3, got {self.difficulty!r}")
        _tokens(f"node '{self.name}'", "input_tokens", self.input_tokens)
        _tokens(f"node '{self.name}'", "output_tokens", self.output_tokens)
        if self.allowed_agents is not None and not self.allowed_agents:
            raise ValueError(f"node '{self.name}': its allowed agents list is empty")


@dataclass(frozen=True)
class Edge:
    """Context of ``tokens`` passed from ``source``'s output into ``target``'s input."""

    source: str
    target: str
    tokens: float

    def __post_init__(self) -> None:
        _tokens(f"edge {self.source} -> {self.target}", "tokens", self.tokens)
        if self.source == self.target:
            raise ValueError(f"edge {self.source} -> {self.target}: a node cannot feed itself")


@dataclass(frozen=True)
class Agent:
    """A seller: capability tier and its public price structure.

    ``input_ratio`` (rho) prices a fresh input token as a fraction of an output token;
    ``cached_discount`` (kappa) prices an input token the agent still holds in its KV cache as a
    fraction of a fresh one (0, the paper's Eq. 2, makes kept context free).
    """

    name: str
    tier: int
    input_ratio: float
    cached_discount: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"agent name must be a non-empty string, got {self.name!r}")
        if isinstance(self.tier, bool) or not isinstance(self.tier, int) or self.tier < 1:
            raise ValueError(f"agent '{self.name}': tier must be an integer >= 1, got {self.tier!r}")
        _tokens(f"agent '{self.name}'", "input_ratio", self.input_ratio)
        if not (0.0 <= self.cached_discount <= 1.0):
            raise ValueError(f"agent '{self.name}': cached_discount must be in [0, 1], "
                             f"got {self.cached_discount!r}")


def split_inputs(nodes: Sequence[Node], links: Iterable[tuple[str, str]]) -> list[Edge]:
    """Edges whose tokens divide each target's input among its sources by their output size.

    When a node's input is exactly the sum of its parents' outputs (most nodes of the paper's
    scenarios) each edge carries the parent's whole output; when the input is a digest (a
    merger reading 30 files into 30k tokens) the digest is shared out in proportion.
    """
    by_name = {n.name: n for n in nodes}
    pairs = list(links)
    for source, target in pairs:
        for end in (source, target):
            if end not in by_name:
                raise ValueError(f"edge {source} -> {target}: unknown node '{end}'")
    parents: dict[str, list[str]] = {}
    for source, target in pairs:
        parents.setdefault(target, []).append(source)
    edges = []
    for source, target in pairs:
        total = sum(by_name[p].output_tokens for p in parents[target])
        share = by_name[source].output_tokens / total if total > 0 else 1.0 / len(parents[target])
        edges.append(Edge(source, target, by_name[target].input_tokens * share))
    return edges


class Workflow:
    """A validated workflow DAG; nodes are indexed in the order given."""

    def __init__(self, nodes: Sequence[Node], edges: Sequence[Edge]) -> None:
        if not nodes:
            raise ValueError("workflow has no nodes")
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.edges: tuple[Edge, ...] = tuple(edges)
        self.index: dict[str, int] = {}
        for k, node in enumerate(self.nodes):
            if node.name in self.index:
                raise ValueError(f"duplicate node name '{node.name}'")
            self.index[node.name] = k
        seen: set[tuple[str, str]] = set()
        for e in self.edges:
            for end in (e.source, e.target):
                if end not in self.index:
                    raise ValueError(f"edge {e.source} -> {e.target}: unknown node '{end}'")
            if (e.source, e.target) in seen:
                raise ValueError(f"duplicate edge {e.source} -> {e.target}")
            seen.add((e.source, e.target))
        graph = nx.DiGraph()
        graph.add_nodes_from(n.name for n in self.nodes)
        graph.add_edges_from((e.source, e.target) for e in self.edges)
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            cycle = []
        if cycle:
            path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
            raise ValueError(f"workflow has a cycle: {path}")
        inflow = np.zeros(len(self.nodes))
        np.add.at(inflow, self.targets, self.tokens)
        for k, node in enumerate(self.nodes):
            if inflow[k] > node.input_tokens * (1 + _TOKEN_RTOL) + _TOKEN_RTOL:
                raise ValueError(f"node '{node.name}': incoming edges carry {inflow[k]:g} tokens but "
                                 f"input_tokens is {node.input_tokens:g}")
        self.external_input: NDArray[np.float64] = np.maximum(
            np.array([n.input_tokens for n in self.nodes]) - inflow, 0.0)

    @classmethod
    def from_links(cls, nodes: Sequence[Node],
                   links: Iterable[tuple[str, str, float | None]]) -> Workflow:
        """Build from (source, target, tokens) triples; ``None`` tokens use :func:`split_inputs`."""
        triples = list(links)
        derived = {(e.source, e.target): e for e in
                   split_inputs(nodes, [(s, t) for s, t, tok in triples if tok is None])}
        edges = [derived[(s, t)] if tok is None else Edge(s, t, tok) for s, t, tok in triples]
        return cls(nodes, edges)

    @cached_property
    def sources(self) -> NDArray[np.int64]:
        """Index of each edge's source node."""
        return np.array([self.index[e.source] for e in self.edges], dtype=np.int64)

    @cached_property
    def targets(self) -> NDArray[np.int64]:
        """Index of each edge's target node."""
        return np.array([self.index[e.target] for e in self.edges], dtype=np.int64)

    @cached_property
    def tokens(self) -> NDArray[np.float64]:
        """Tokens carried by each edge."""
        return np.array([e.tokens for e in self.edges], dtype=np.float64)

    @cached_property
    def undirected(self) -> nx.Graph:
        """The dependency graph without directions, on node indices: what the solvers see."""
        graph = nx.Graph()
        graph.add_nodes_from(range(len(self.nodes)))
        graph.add_edges_from(zip(self.sources.tolist(), self.targets.tolist(), strict=True))
        return graph

    def is_forest(self) -> bool:
        """True when no undirected cycle exists, so the tree DP is exact."""
        return bool(nx.is_forest(self.undirected))

    @property
    def max_difficulty(self) -> int:
        """The hardest node's difficulty: the tier a single agent needs to serve the whole graph."""
        return max(n.difficulty for n in self.nodes)


def capability(workflow: Workflow, agents: Sequence[Agent]) -> NDArray[np.bool_]:
    """(nodes x agents) mask of who may serve what; raises when some node has nobody."""
    if not agents:
        raise ValueError("no agents given")
    names = [a.name for a in agents]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate agent name '{duplicates[0]}'")
    tiers = np.array([a.tier for a in agents])
    mask = tiers[None, :] >= np.array([n.difficulty for n in workflow.nodes])[:, None]
    for k, node in enumerate(workflow.nodes):
        if node.allowed_agents is not None:
            unknown = sorted(node.allowed_agents - set(names))
            if unknown:
                raise ValueError(f"node '{node.name}': unknown agent '{unknown[0]}' among its allowed agents")
            mask[k] &= np.array([n in node.allowed_agents for n in names])
        if not mask[k].any():
            raise ValueError(f"node '{node.name}' (difficulty {node.difficulty}): no agent can serve it "
                             f"(needs tier >= {node.difficulty}"
                             + (", among its allowed agents)" if node.allowed_agents else ")"))
    return mask
