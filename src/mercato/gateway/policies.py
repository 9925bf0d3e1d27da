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
- ``knn``: a k-nearest-neighbour quality router, a stand-in for IEMAS's learned baselines
  (see :mod:`mercato.gateway.knn`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


Pick = Callable[[int, NDArray[np.bool_], NDArray[np.float64], NDArray[np.int64]], int]


def assign_sequentially(ctx: BatchContext, pick: Pick, rows: Sequence[int] | None = None,
                        taken: NDArray[np.int64] | None = None) -> NDArray[np.int64]:
    """Walk the batch in order; ``pick(i, allowed_i, load, slots_left)`` chooses request i's backend.

    The shared loop of the one-request-at-a-time policies: requests no backend can serve stay
    at -1, and each choice adds to that backend's load and takes one of its slots. ``rows``
    limits the walk to some requests; ``taken`` (M,) counts slots already given away.
    """
    load = ctx.inflight.astype(np.float64).copy()
    left = ctx.capacity.astype(np.int64).copy()
    if taken is not None:
        load += taken
        left -= taken
    out = np.full(len(ctx.requests), -1, dtype=np.int64)
    for i in range(len(ctx.requests)) if rows is None else rows:
        ok = ctx.allowed[i]
        if ok.any():
            choice = pick(i, ok, load, left)
            out[i] = choice
            load[choice] += 1
            left[choice] -= 1
    return out


def greedy_fill(ctx: BatchContext, score: NDArray[np.float64], rows: Sequence[int] | None = None,
                taken: NDArray[np.int64] | None = None) -> NDArray[np.int64]:
    """Give each request, in order, its best-scoring allowed backend with a slot left.

    Higher score is better; when every allowed backend is full the request still gets its
    best allowed backend and queues there (as with a real load balancer). ``rows`` and
    ``taken`` as in :func:`assign_sequentially`.
    """

    def pick(i: int, ok: NDArray[np.bool_], _load: NDArray[np.float64], left: NDArray[np.int64]) -> int:
        with_slot = ok & (left > 0)
        pool = with_slot if with_slot.any() else ok
        return int(np.argmax(np.where(pool, score[i], -np.inf)))

    return assign_sequentially(ctx, pick, rows, taken)


class AuctionPolicy(_Stateless):
    """IEMAS: exact b-matching on predicted welfare with VCG payments.

    A running average of the rounds' market-clearing slot prices warm-starts the next solve:
    consecutive batches of one market clear at similar prices, and the outcome never depends
    on them (see :mod:`mercato.mechanisms.bmatching`).
    """

    name = "auction"
    price_smoothing = 0.3  # weight of the newest round in the running average

    def __init__(self) -> None:
        self._prices: NDArray[np.float64] | None = None

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Run the VCG auction; unmatched requests go, unpaid, to the best slots left over.

        IEMAS sends every unmatched request to its own best backend, ignoring capacity and the
        other unmatched requests, which piles them onto one server. Here they fill the slots the
        auction left free, best predicted welfare first, and queue only when none is left.
        """
        values = np.where(ctx.allowed, ctx.values, np.nan)
        warm = self._prices if self._prices is not None and self._prices.shape == values.shape[1:] else None
        outcome = run_vcg_auction(values, ctx.costs, ctx.capacity, warm_prices=warm)
        a = self.price_smoothing
        self._prices = outcome.slot_prices if warm is None else (1 - a) * warm + a * outcome.slot_prices
        assignment = outcome.assignment.copy()
        unmatched = np.flatnonzero(assignment < 0)
        if unmatched.size:
            taken = np.bincount(assignment[outcome.matched], minlength=ctx.allowed.shape[1])
            fallback = greedy_fill(ctx, ctx.values - ctx.costs, rows=unmatched.tolist(), taken=taken)
            assignment[unmatched] = fallback[unmatched]
        return Allocation(assignment, outcome.matched.copy(), outcome.externality.copy())


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
        """The next backend in the cycle that is allowed (and has a slot, if any does)."""
        m = ctx.allowed.shape[1]

        def pick(_i: int, ok: NDArray[np.bool_], _load: NDArray[np.float64], left: NDArray[np.int64]) -> int:
            order = (self._next + np.arange(m)) % m
            with_slot = ok[order] & (left[order] > 0)
            choice = int(order[np.argmax(with_slot)] if with_slot.any() else order[np.argmax(ok[order])])
            self._next = (choice + 1) % m
            return choice

        return Allocation.unpriced(assign_sequentially(ctx, pick))


class LeastLoadedPolicy(_Stateless):
    """Lowest utilisation (in flight / capacity), counting this batch's own assignments."""

    name = "least_loaded"

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Assign requests one by one to the currently least utilised allowed backend."""
        cap = np.array([max(1, b.capacity) for b in ctx.backends], dtype=np.float64)

        def pick(_i: int, ok: NDArray[np.bool_], load: NDArray[np.float64], _left: NDArray[np.int64]) -> int:
            return int(np.argmin(np.where(ok, load / cap, np.inf)))

        return Allocation.unpriced(assign_sequentially(ctx, pick))


@dataclass
class CacheAwarePolicy(_Stateless):
    """SGLang router's cache-aware rule (defaults are its published defaults)."""

    cache_threshold: float = 0.5
    balance_abs_threshold: float = 32.0
    balance_rel_threshold: float = 1.0001
    name: str = "cache_aware"

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Prefix match unless the load is imbalanced; otherwise the shortest queue."""

        def pick(i: int, ok: NDArray[np.bool_], load: NDArray[np.float64], _left: NDArray[np.int64]) -> int:
            loads = load[ok]
            least = int(np.argmin(np.where(ok, load, np.inf)))
            if (loads.max() - loads.min() > self.balance_abs_threshold
                    and loads.max() > self.balance_rel_threshold * loads.min()):
                return least
            best = int(np.argmax(np.where(ok, ctx.affinity[i], -np.inf)))
            return best if ctx.affinity[i, best] > self.cache_threshold else least

        return Allocation.unpriced(assign_sequentially(ctx, pick))


POLICY_NAMES: tuple[str, ...] = ("auction", "random", "round_robin", "least_loaded", "cache_aware", "mf",
                                  "knn")


def make_policy(name: str, n_backends: int, seed: int = 0) -> Policy:
    """Build a policy by name; raises ValueError listing the known names."""
    from mercato.gateway.knn import KnnQualityPolicy
    from mercato.gateway.mf import MatrixFactorisationPolicy

    factories = {
        "auction": AuctionPolicy,
        "random": RandomPolicy,
        "round_robin": RoundRobinPolicy,
        "least_loaded": LeastLoadedPolicy,
        "cache_aware": CacheAwarePolicy,
        "mf": lambda: MatrixFactorisationPolicy(n_backends, seed=seed),
        "knn": lambda: KnnQualityPolicy(n_backends),
    }
    if name not in factories:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
    return factories[name]()  # type: ignore[no-any-return]
