"""Empirical truthfulness and participation checks for workflow procurement mechanisms.

Like :mod:`mercato.mechanisms.properties` for the VCG auction, these measure rather than
assume: each agent's bid is swept over misreports with everything else fixed, and the largest
gain in true utility over bidding its cost is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mercato.mechanisms.properties import DSICReport, PropertyReport
from mercato.mechanisms.workflow.outcome import ProcurementOutcome

# (bids, agent whose payment is needed, or None for all) -> outcome
ProcurementMechanism = Callable[[NDArray[np.float64], int | None], ProcurementOutcome]

DEFAULT_BID_SCALES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.7, 0.85, 0.95, 0.99, 1.01, 1.05, 1.15,
                                         1.3, 1.6, 2.0, 3.0)


def check_procurement_dsic(mechanism: ProcurementMechanism, costs: ArrayLike, *,
                           scales: Sequence[float] = DEFAULT_BID_SCALES,
                           agents: Sequence[int] | None = None) -> DSICReport:
    """For each agent, bid ``cost * s`` for every s in ``scales``; the largest utility gain found."""
    c = np.asarray(costs, dtype=np.float64)
    truthful = mechanism(c, None).utilities(c)
    best = DSICReport(max_gain=0.0, buyer=-1, misreport="truthful", tried=0)
    tried = 0
    for i in range(c.size) if agents is None else agents:
        for s in scales:
            bids = c.copy()
            bids[i] = c[i] * s
            tried += 1
            gain = float(mechanism(bids, i).utilities(c)[i] - truthful[i])
            if gain > best.max_gain:
                best = DSICReport(max_gain=gain, buyer=int(i), misreport=f"x{s:g}", tried=0)
    return DSICReport(best.max_gain, best.buyer, best.misreport, tried)


def check_procurement_ir(outcome: ProcurementOutcome, costs: ArrayLike) -> PropertyReport:
    """Every agent's true utility must be >= 0; returns the worst shortfall and whose it is."""
    utility = outcome.utilities(costs)
    worst = int(np.argmin(utility))
    return PropertyReport(worst=float(max(0.0, -utility[worst])), where=worst)
