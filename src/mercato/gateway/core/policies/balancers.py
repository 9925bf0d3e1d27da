"""The usual load balancers: random, round robin and least loaded."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mercato.gateway.core.market import BatchContext
from mercato.gateway.core.policies.base import Allocation, Stateless, assign_sequentially, greedy_fill


class RandomPolicy(Stateless):
    """Uniformly random allowed backend with a free slot."""

    name = "random"

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Random scores, then the common greedy fill."""
        return Allocation.unpriced(greedy_fill(ctx, ctx.rng.random(ctx.allowed.shape)))


class RoundRobinPolicy(Stateless):
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


class LeastLoadedPolicy(Stateless):
    """Lowest utilisation (in flight / capacity), counting this batch's own assignments."""

    name = "least_loaded"

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Assign requests one by one to the currently least utilised allowed backend."""
        cap = np.array([max(1, b.capacity) for b in ctx.backends], dtype=np.float64)

        def pick(_i: int, ok: NDArray[np.bool_], load: NDArray[np.float64], _left: NDArray[np.int64]) -> int:
            return int(np.argmin(np.where(ok, load / cap, np.inf)))

        return Allocation.unpriced(assign_sequentially(ctx, pick))
