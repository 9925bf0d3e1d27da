"""IEMAS's auction: exact welfare-maximising b-matching with VCG (Clarke pivot) payments."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mercato.gateway.core.market import BatchContext
from mercato.gateway.core.policies.base import Allocation, Stateless, greedy_fill
from mercato.mechanisms import AuctionOutcome, run_vcg_auction
from mercato.mechanisms.congestion import run_congestion_auction
from mercato.mechanisms.serve_all import serve_all


class AuctionPolicy(Stateless):
    """IEMAS: exact b-matching on predicted welfare with VCG payments, serving every request.

    ``serve_all=False`` is IEMAS as published: only pairs of positive welfare enter the auction.

    A running average of the rounds' market-clearing slot prices warm-starts the next solve:
    consecutive batches of one market clear at similar prices, and the outcome never depends
    on them but for the choice between exactly equally good allocations (see
    :mod:`mercato.mechanisms.bmatching`).
    """

    name = "auction"
    price_smoothing = 0.3  # weight of the newest round in the running average

    def __init__(self, serve_all: bool = True) -> None:
        self.serve_all = serve_all
        self._prices: NDArray[np.float64] | None = None

    @property
    def warm_prices(self) -> NDArray[np.float64] | None:
        """The running average of clearing prices the next solve starts from (None: cold)."""
        return self._prices

    def reset(self) -> None:
        """Forget the running prices: the next round is solved cold (same outcome, slower)."""
        self._prices = None

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Run the VCG auction over the allocations that serve every request, when there are any.

        A request whose predicted welfare is negative everywhere (a long prompt at a low bid) is
        still served, so it stays in the auction (:mod:`mercato.mechanisms.serve_all`) and pays
        its cost plus the welfare it takes from the others, instead of going to a fallback that
        ignores congestion. When not every request can be served (more requests than slots, or
        a model no backend with a slot serves), the plain auction runs and the requests it leaves
        out fill the slots left over, best predicted welfare first, unpaid, queueing only when
        none is left (IEMAS sent each to its own best backend and piled them onto one server).
        """
        values = np.where(ctx.allowed, ctx.values, np.nan)
        if self.serve_all:
            spread = 0.0 if ctx.slot_penalty is None else float(ctx.slot_penalty.max(initial=0.0))
            outcome = serve_all(lambda v: self._auction(ctx, v), values, ctx.costs, ctx.capacity, spread)
        else:
            outcome = self._auction(ctx, values)
        assignment = outcome.assignment.copy()
        unmatched = np.flatnonzero(assignment < 0)
        if unmatched.size:
            taken = np.bincount(assignment[outcome.matched], minlength=ctx.allowed.shape[1])
            fallback = greedy_fill(ctx, ctx.values - ctx.costs, rows=unmatched.tolist(), taken=taken)
            assignment[unmatched] = fallback[unmatched]
        return Allocation(assignment, outcome.matched.copy(), outcome.externality.copy())

    def _auction(self, ctx: BatchContext, values: NDArray[np.float64]) -> AuctionOutcome:
        """One exact solve with payments: congestion-priced slots, or warm-started b-matching."""
        if ctx.slot_penalty is not None:
            return run_congestion_auction(values, ctx.costs, ctx.slot_penalty, ctx.capacity)
        warm = self._prices if self._prices is not None and self._prices.shape == values.shape[1:] else None
        outcome = run_vcg_auction(values, ctx.costs, ctx.capacity, warm_prices=warm)
        a = self.price_smoothing
        self._prices = outcome.slot_prices if warm is None else (1 - a) * warm + a * outcome.slot_prices
        return outcome
