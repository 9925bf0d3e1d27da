"""Routing policies behind one interface; every policy sees the same batch context.

A policy maps a micro-batch to one primary backend per request. The router then adds the
failover order and the accounting, so policies differ only in the decision itself:

- ``auction``: IEMAS. Exact welfare-maximising b-matching on ``w = value - predicted cost`` over
  free slots, Clarke-pivot (VCG) payments; requests left unmatched go unpaid to their best pair.
- ``random``, ``round_robin``, ``least_loaded``: the usual load balancers.
- ``cache_aware``: SGLang's router rule. Route to the backend with the longest prefix match
  when it covers more than ``cache_threshold`` of the prompt, else to the least loaded; but when
  the load imbalance passes both thresholds (absolute and relative), to the least loaded.
- ``mf``: a RouteLLM-style matrix-factorisation quality router (see :mod:`mercato.gateway.mf`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from mercato.gateway.predictors import Predictions
from mercato.gateway.types import BackendSpec, Observation, RouteRequest
from mercato.mechanisms import run_vcg_auction


@dataclass
class BatchContext:
    """What every policy sees for one micro-batch; arrays are (N, M) unless noted."""

    requests: list[RouteRequest]
    backends: list[BackendSpec]
    allowed: NDArray[np.bool_]
    capacity: NDArray[np.int64]         # (M,) slots offered to this batch
    inflight: NDArray[np.float64]       # (M,) requests already running or queued
    affinity: NDArray[np.float64]
    predictions: Predictions
    values: NDArray[np.float64]
    costs: NDArray[np.float64]
    rng: np.random.Generator

    @property
    def welfare(self) -> NDArray[np.float64]:
        """Predicted welfare of each pair; NaN where the pair is not allowed."""
        return np.where(self.allowed, self.values - self.costs, np.nan)


@dataclass
class Allocation:
    """A policy's answer: primary backend per request (-1: none), and VCG terms if it priced."""

    assignment: NDArray[np.int64]
    paid: NDArray[np.bool_]
    externality: NDArray[np.float64]

    @classmethod
    def unpriced(cls, assignment: NDArray[np.int64]) -> Allocation:
        """An allocation from a policy that charges only pass-through cost."""
        n = assignment.shape[0]
        return cls(assignment, np.zeros(n, dtype=bool), np.zeros(n))


class Policy(Protocol):
    """A routing rule. ``observe`` lets learning policies use the run's own feedback."""

    name: str

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Choose a primary backend for each request of the batch."""
        ...

    def observe(self, request: RouteRequest, backend: int, observation: Observation) -> None:
        """Feedback after a request finished (no-op for stateless policies)."""
        ...


class _Stateless:
    def observe(self, request: RouteRequest, backend: int, observation: Observation) -> None:
        """Stateless policies learn nothing from feedback."""


def greedy_fill(ctx: BatchContext, score: NDArray[np.float64]) -> NDArray[np.int64]:
    """Give each request, in order, its best-scoring allowed backend with a slot left.

    Higher score is better; when every allowed backend is full the request still gets its
    best allowed backend and queues there (as with a real load balancer).
    """
    left = ctx.capacity.astype(np.int64).copy()
    out = np.full(len(ctx.requests), -1, dtype=np.int64)
    for i in range(len(ctx.requests)):
        ok = ctx.allowed[i]
        if not ok.any():
            continue
        with_slot = ok & (left > 0)
        pool = with_slot if with_slot.any() else ok
        choice = int(np.argmax(np.where(pool, score[i], -np.inf)))
        out[i] = choice
        left[choice] -= 1
    return out


class AuctionPolicy(_Stateless):
    """IEMAS: exact b-matching on predicted welfare with VCG payments."""

    name = "auction"

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Run the VCG auction; unmatched requests fall back (unpaid) to their best pair."""
        values = np.where(ctx.allowed, ctx.values, np.nan)
        outcome = run_vcg_auction(values, ctx.costs, ctx.capacity)
        assignment = outcome.assignment.copy()
        paid = outcome.matched.copy()
        for i in np.flatnonzero(assignment < 0):
            if ctx.allowed[i].any():
                assignment[i] = int(np.nanargmax(np.where(ctx.allowed[i], ctx.values[i] - ctx.costs[i],
                                                          np.nan)))
        return Allocation(assignment, paid, outcome.externality.copy())


class RandomPolicy(_Stateless):
    """Uniformly random allowed backend with a free slot."""

    name = "random"

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Random scores, then the common greedy fill."""
        return Allocation.unpriced(greedy_fill(ctx, ctx.rng.random(ctx.allowed.shape)))


class RoundRobinPolicy(_Stateless):
    """Cycle through the backends, skipping those that are full or not allowed."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def allocate(self, ctx: BatchContext) -> Allocation:
        """The next backend in the cycle gets the highest score."""
        n, m = ctx.allowed.shape
        out = np.full(n, -1, dtype=np.int64)
        left = ctx.capacity.copy()
        for i in range(n):
            order = (self._next + np.arange(m)) % m
            ok = ctx.allowed[i, order]
            if not ok.any():
                continue
            with_slot = ok & (left[order] > 0)
            pick = order[np.argmax(with_slot)] if with_slot.any() else order[np.argmax(ok)]
            out[i] = pick
            left[pick] -= 1
            self._next = (int(pick) + 1) % m
        return Allocation.unpriced(out)


class LeastLoadedPolicy(_Stateless):
    """Lowest utilisation (in flight / capacity), counting this batch's own assignments."""

    name = "least_loaded"

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Assign requests one by one to the currently least utilised allowed backend."""
        load = ctx.inflight.astype(np.float64).copy()
        cap = np.array([max(1, b.capacity) for b in ctx.backends], dtype=np.float64)
        out = np.full(len(ctx.requests), -1, dtype=np.int64)
        for i in range(len(ctx.requests)):
            if not ctx.allowed[i].any():
                continue
            choice = int(np.argmin(np.where(ctx.allowed[i], load / cap, np.inf)))
            out[i] = choice
            load[choice] += 1
        return Allocation.unpriced(out)


@dataclass
class CacheAwarePolicy(_Stateless):
    """SGLang router's cache-aware rule (defaults are its published defaults)."""

    cache_threshold: float = 0.5
    balance_abs_threshold: float = 32.0
    balance_rel_threshold: float = 1.0001
    name: str = "cache_aware"

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Prefix match unless the load is imbalanced; otherwise the shortest queue."""
        load = ctx.inflight.astype(np.float64).copy()
        out = np.full(len(ctx.requests), -1, dtype=np.int64)
        for i in range(len(ctx.requests)):
            ok = ctx.allowed[i]
            if not ok.any():
                continue
            loads = load[ok]
            imbalanced = (loads.max() - loads.min() > self.balance_abs_threshold
                          and loads.max() > self.balance_rel_threshold * loads.min())
            least = int(np.argmin(np.where(ok, load, np.inf)))
            if imbalanced:
                choice = least
            else:
                best = int(np.argmax(np.where(ok, ctx.affinity[i], -np.inf)))
                choice = best if ctx.affinity[i, best] > self.cache_threshold else least
            out[i] = choice
            load[choice] += 1
        return Allocation.unpriced(out)


POLICY_NAMES: tuple[str, ...] = ("auction", "random", "round_robin", "least_loaded", "cache_aware", "mf")


def make_policy(name: str, n_backends: int, seed: int = 0) -> Policy:
    """Build a policy by name; raises ValueError listing the known names."""
    from mercato.gateway.mf import MatrixFactorisationPolicy

    factories = {
        "auction": AuctionPolicy,
        "random": RandomPolicy,
        "round_robin": RoundRobinPolicy,
        "least_loaded": LeastLoadedPolicy,
        "cache_aware": CacheAwarePolicy,
        "mf": lambda: MatrixFactorisationPolicy(n_backends, seed=seed),
    }
    if name not in factories:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
    return factories[name]()  # type: ignore[no-any-return]
