"""The policy interface: what a routing rule returns, and the sequential fills several share.

A policy maps a micro-batch (a :class:`~mercato.gateway.core.market.BatchContext`) to one
primary backend per request. The router then adds the failover order and the accounting, so
policies differ only in the decision itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from mercato.gateway.core.market import BatchContext
from mercato.gateway.core.types import Observation, RouteRequest


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


class Stateless:
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
