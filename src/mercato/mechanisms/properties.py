"""Empirical checks of the three properties a truthful auction must have.

They test outcomes, not proofs: ``check_dsic`` actually tries misreports and measures what a
buyer would gain, so it fails on a mechanism that is not truthful (first-price, say), and the
tests and experiments use it as evidence rather than assertion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mercato.mechanisms.vcg import AuctionOutcome, run_vcg_auction

Mechanism = Callable[[NDArray[np.float64], NDArray[np.float64], ArrayLike], AuctionOutcome]

DEFAULT_SCALES: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 3.0, 31), 3))


@dataclass(frozen=True)
class DSICReport:
    """Largest utility gain any tried misreport gave any buyer, and which one gave it."""

    max_gain: float
    buyer: int
    misreport: str
    tried: int

    def holds(self, tol: float = 1e-9) -> bool:
        """True when no misreport gained more than ``tol``."""
        return self.max_gain <= tol


@dataclass(frozen=True)
class PropertyReport:
    """Worst violation of a per-outcome property (0 when it holds) and where it occurred."""

    worst: float
    where: int

    def holds(self, tol: float = 1e-9) -> bool:
        """True when the worst violation is within ``tol``."""
        return self.worst <= tol


def buyer_utilities(values: NDArray[np.float64], outcome: AuctionOutcome) -> NDArray[np.float64]:
    """Quasi-linear utility of each buyer under its *true* values: value of its agent - payment."""
    rows = np.flatnonzero(outcome.matched)
    utility = np.zeros(outcome.assignment.shape[0])
    utility[rows] = values[rows, outcome.assignment[rows]] - outcome.payments[rows]
    return utility


def _misreports(row: NDArray[np.float64], scales: Sequence[float],
                shifts: Sequence[float]) -> list[tuple[str, NDArray[np.float64]]]:
    finite = np.isfinite(row)
    base = np.where(finite, row, 0.0)  # forbidden pairs (NaN / -inf) stay forbidden in every report
    out = [(f"x{s:g}", np.where(finite, base * s, row)) for s in scales]
    out += [(f"{d:+.3g}", np.where(finite, base + d, row)) for d in shifts]
    return out


def check_dsic(values: ArrayLike, costs: ArrayLike, capacity: ArrayLike,
               mechanism: Mechanism = run_vcg_auction, *, scales: Sequence[float] = DEFAULT_SCALES,
               shifts: Sequence[float] | None = None,
               buyers: Sequence[int] | None = None) -> DSICReport:
    """For each buyer, sweep misreported value rows with everything else fixed.

    Misreports are the true row scaled by each of ``scales`` and shifted by each of ``shifts``
    (default: 11 shifts spanning plus/minus the largest finite value). Returns the largest gain
    in true utility over truthful reporting.
    """
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64)
    truthful = buyer_utilities(v, mechanism(v, c, capacity))
    if shifts is None:
        span = float(np.abs(v[np.isfinite(v)]).max()) if np.isfinite(v).any() else 1.0
        shifts = tuple(np.linspace(-span, span, 11))
    best = DSICReport(max_gain=0.0, buyer=-1, misreport="truthful", tried=0)
    tried = 0
    for j in range(v.shape[0]) if buyers is None else buyers:
        for label, row in _misreports(v[j], scales, shifts):
            report = v.copy()
            report[j] = row
            tried += 1
            gain = buyer_utilities(v, mechanism(report, c, capacity))[j] - truthful[j]
            if gain > best.max_gain:
                best = DSICReport(max_gain=float(gain), buyer=int(j), misreport=label, tried=0)
    return DSICReport(best.max_gain, best.buyer, best.misreport, tried)


def check_individual_rationality(values: ArrayLike, outcome: AuctionOutcome) -> PropertyReport:
    """Every matched buyer's true utility must be non-negative; returns the worst shortfall."""
    utility = buyer_utilities(np.asarray(values, dtype=np.float64), outcome)
    worst = int(np.argmin(utility)) if utility.size else -1
    return PropertyReport(worst=float(max(0.0, -utility[worst])) if utility.size else 0.0,
                          where=worst)


def check_weak_budget_balance(costs: ArrayLike, outcome: AuctionOutcome) -> PropertyReport:
    """Payments collected must cover the costs paid to agents; returns the deficit (0 if none)."""
    c = np.asarray(costs, dtype=np.float64)
    rows = np.flatnonzero(outcome.matched)
    deficit = float(c[rows, outcome.assignment[rows]].sum() - outcome.payments[rows].sum())
    return PropertyReport(worst=max(0.0, deficit), where=-1)
