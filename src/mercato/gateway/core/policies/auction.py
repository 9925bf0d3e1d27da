"""IEMAS's auction: exact welfare-maximising b-matching with VCG (Clarke pivot) payments."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mercato.gateway.core.market import BatchContext
from mercato.gateway.core.policies.base import Allocation, Stateless, greedy_fill
from mercato.mechanisms import run_vcg_auction
from mercato.mechanisms.congestion import run_congestion_auction


class AuctionPolicy(Stateless):
    """IEMAS: exact b-matching on predicted welfare with VCG payments.

    A running average of the rounds' market-clearing slot prices warm-starts the next solve:
    consecutive batches of one market clear at similar prices, and the outcome never depends
    on them (see :mod:`mercato.mechanisms.bmatching`).
    """

    name = "auction"
    price_smoothing = 0.3  # weight of the newest round in the running average

    def __init__(self) -> None:
        self._prices: NDArray[np.float64] | None = None

    @property
    def warm_prices(self) -> NDArray[np.float64] | None:
        """The running average of clearing prices the next solve starts from (None: cold)."""
        return self._prices

    def reset(self) -> None:
        """Forget the running prices: the next round is solved cold (same outcome, slower)."""
        self._prices = None

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Run the VCG auction; unmatched requests go, unpaid, to the best slots left over.

        IEMAS sends every unmatched request to its own best backend, ignoring capacity and the
        other unmatched requests, which piles them onto one server. Here they fill the slots the
        auction left free, best predicted welfare first, and queue only when none is left.
        """
        values = np.where(ctx.allowed, ctx.values, np.nan)
        warm = self._prices if self._prices is not None and self._prices.shape == values.shape[1:] else None
        if ctx.slot_penalty is not None:
            outcome = run_congestion_auction(values, ctx.costs, ctx.slot_penalty, ctx.capacity)
            warm = None
        else:
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
