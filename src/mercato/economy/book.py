"""The data a mechanism receives and returns each round, and shared admission helpers.

The interface is described in :mod:`mercato.economy.mechanisms`; this module holds its types
(:class:`PoolSpec`, :class:`RoundBook`, :class:`Allocation`, :class:`Mechanism`) and the helpers
any rule may reuse: :func:`pack` (feasible greedy packing in a preference order) and
:func:`expected_welfare_prefix` (the congestion-aware stop), applied by :func:`admit` only when the
run's admission rule is ``welfare_aware``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from mercato.economy.config import Parameters
from mercato.economy.learning import sigmoid


@dataclass(frozen=True)
class PoolSpec:
    """One capacity pool of a run, as a mechanism sees it."""

    name: str
    capacity: NDArray[np.float64]
    mean_bundle: NDArray[np.float64]
    execution_efficiency: float = 1.0
    slice_capacity: int | None = None
    # EconomyConfig.admission: "paper" fills capacity, "welfare_aware" applies the stop.
    admission: str = "paper"

    @property
    def hybrid(self) -> bool:
        """True when agents face an integrator's slice rather than per-tier capacities."""
        return self.slice_capacity is not None


@dataclass(frozen=True)
class RoundBook:
    """What a mechanism sees about one pool in one round (see the module docstring)."""

    round: int
    bids: NDArray[np.float64]
    weights: NDArray[np.float64]
    classes: NDArray[np.int64]
    success_a: NDArray[np.float64]
    success_b: NDArray[np.float64]
    predicted_rho: float
    bundles: NDArray[np.int64]
    templates: NDArray[np.int64]
    deadlines: NDArray[np.float64]
    agents: NDArray[np.int64]
    pool: PoolSpec
    rng: np.random.Generator

    @property
    def size(self) -> int:
        """Number of tasks in the book."""
        return int(self.bids.size)


@dataclass(frozen=True)
class Allocation:
    """A mechanism's answer for one pool and round."""

    admitted: NDArray[np.bool_]
    payments: NDArray[np.float64]
    prices: NDArray[np.float64]


class Mechanism(Protocol):
    """An allocation rule for one pool over one run."""

    name: str

    def allocate(self, book: RoundBook) -> Allocation:
        """Decide which tasks of ``book`` run this round and what they pay."""
        ...


MechanismFactory = Callable[[PoolSpec, Parameters], Mechanism]
NO_PRICES = np.zeros(0)


# --- shared admission helpers --------------------------------------------------------------


def pack(book: RoundBook, order: NDArray[np.int64]) -> NDArray[np.int64]:
    """Tasks of ``order`` admitted greedily in that order while they fit (skipping misfits).

    Hybrid pools take the first ``slice_capacity`` tasks; naive pools check every tier.
    """
    if book.pool.slice_capacity is not None:
        return order[: book.pool.slice_capacity]
    demand = book.bundles[order]
    cum = np.cumsum(demand, axis=0)
    fits = (cum <= book.pool.capacity).all(axis=1)
    stop = int(order.size if fits.all() else np.argmin(fits))
    if stop == order.size:
        return order
    left = (book.pool.capacity - (cum[stop - 1] if stop else 0)).tolist()
    chosen = order[:stop].tolist()
    for k, need in zip(order[stop + 1:].tolist(), demand[stop + 1:].tolist(), strict=True):
        if need[0] <= left[0] and need[1] <= left[1] and need[2] <= left[2]:
            chosen.append(k)
            left = [left[0] - need[0], left[1] - need[1], left[2] - need[2]]
    return np.asarray(chosen, dtype=np.int64)


def expected_welfare_prefix(book: RoundBook, sequence: NDArray[np.int64]) -> NDArray[np.int64]:
    """Longest-value prefix of an admission ``sequence`` under the learned success model.

    Prefix n is worth ``sum_c sigma(a_c + b_c * rho_n) * W_c(n)`` where ``rho_n`` is the bottleneck
    utilisation the first n tasks create and ``W_c(n)`` their class-c weights; the best n wins.
    """
    if sequence.size == 0:
        return sequence
    load = np.cumsum(book.bundles[sequence], axis=0) * book.pool.execution_efficiency
    rho = (load / book.pool.capacity).max(axis=1)
    k = book.success_a.size
    cls = book.classes[sequence]
    weights = np.zeros((sequence.size, k))
    weights[np.arange(sequence.size), cls] = book.weights[sequence]
    value = (sigmoid(book.success_a + np.outer(rho, book.success_b)) * np.cumsum(weights, axis=0)
             ).sum(axis=1)
    best = int(np.argmax(value))
    return sequence[: best + 1] if value[best] > 0 else sequence[:0]


def admit(book: RoundBook, sequence: NDArray[np.int64]) -> NDArray[np.int64]:
    """What a value-based rule admits of a packed ``sequence`` under the pool's admission rule.

    ``paper``: all of it (the reference fills capacity with positive-surplus tasks).
    ``welfare_aware``: its best prefix under :func:`expected_welfare_prefix`.
    """
    return expected_welfare_prefix(book, sequence) if book.pool.admission == "welfare_aware" else sequence


def mask(book: RoundBook, chosen: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Boolean admission vector of a set of task indices."""
    out = np.zeros(book.size, dtype=bool)
    out[chosen] = True
    return out


def by_decreasing(score: NDArray[np.float64], positive_only: bool = True) -> NDArray[np.int64]:
    """Indices by decreasing score (stable), optionally only those with a positive score."""
    order = np.argsort(-score, kind="stable")
    return order[score[order] > 0] if positive_only else order
