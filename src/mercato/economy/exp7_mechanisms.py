"""Experiment 7's truthful mechanisms as simulator rules: VCG over slices and the clinching auction.

The paper leaves them as future work (Section VI): replace tâtonnement by auctions that make
truthful bidding dominant, and see what they are worth once agents inflate their values. Both
rules run under a hybrid architecture, where agents face the integrator's slices rather than raw
tiers (Proposition 3); a naive pool gets a ValueError.

* **Single slice type.** Each integrator exports one homogeneous slice type (Proposition 3,
  condition ii), so every task wants one unit of the same good: the single-type-per-task case of
  Proposition 2(iii). ``vcg`` runs :func:`mercato.mechanisms.run_vcg_auction` (exact b-matching
  with Clarke payments) on the tasks' bids for that slice; ``clinching`` runs
  :func:`mercato.mechanisms.clinching.run_clinching_auction` on the slice polymatroid
  ``f({slice}) = supply``. With one type and no budgets both give the same allocation and charge
  every winner the (supply + 1)-th highest bid; Experiment 7 reports whether the two agree run by
  run, a cross-check of two independent implementations.
* **Supply fixed before the bids.** An auction stays truthful only if a bidder cannot move the
  quantity for sale in its favour, so the congestion-aware stop that value-greedy and the
  posted-price integrator apply to the current bids is applied to the *previous* round's book
  instead: the integrator sells as many slices as :func:`mercato.economy.book.expected_welfare_prefix`
  admitted from last round's reports under the success model learned since, scaled to this
  round's number of tasks and capped by the slice capacity (the first round, with no history,
  offers the whole slice capacity). Within a round the supply is a constant, so the per-epoch DSIC
  guarantee holds; across rounds, reports shape future supply, which the paper's per-epoch
  theorems do not cover. Any welfare gap to value-greedy at 0% strategic agents is the price of
  this one-round lag.
* **Strategic agents** are the simulator's: ``EconomyConfig.strategic_share`` of the agents
  report ``inflation * v`` (Experiment 7 uses x1.5 and x2) under every mechanism; welfare and
  utilities are computed from true values.

Importing this module registers ``vcg`` and ``clinching`` with :mod:`mercato.economy.mechanisms`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from mercato.economy.book import (
    Allocation,
    PoolSpec,
    RoundBook,
    by_decreasing,
    expected_welfare_prefix,
    pack,
)
from mercato.economy.config import Parameters
from mercato.economy.mechanisms import register_mechanism
from mercato.mechanisms import run_vcg_auction
from mercato.mechanisms.clinching import run_clinching_auction

TRUTHFUL_MECHANISMS: tuple[str, ...] = ("vcg", "clinching")
INFLATIONS: tuple[float, ...] = (1.5, 2.0)


class SliceAuction(ABC):
    """A truthful auction of one integrator's slices; subclasses say how the slices are sold."""

    name = "slice_auction"

    def __init__(self, pool: PoolSpec, params: Parameters) -> None:
        if pool.slice_capacity is None:
            raise ValueError(f"mechanism {self.name!r} auctions integrator slices; run it with a hybrid "
                             f"architecture (pool {pool.name!r} is naive)")
        self.capacity = pool.slice_capacity
        self.previous: RoundBook | None = None

    def allocate(self, book: RoundBook) -> Allocation:
        """Fix the round's supply from the previous book, then auction it on this one."""
        supply = min(self.capacity, self.supply(book), book.size)
        self.previous = book
        admitted, payments = self.sell(book, supply)
        price = float(payments[admitted].max()) if admitted.any() else 0.0
        return Allocation(admitted, np.where(admitted, payments, 0.0), np.array([price]))

    def supply(self, book: RoundBook) -> int:
        """Slices for sale: last round's congestion-aware admissions, rescaled to this round."""
        last = self.previous
        if last is None:
            return self.capacity
        if last.size == 0:
            return book.size
        relearned = replace(last, success_a=book.success_a, success_b=book.success_b)
        admitted = expected_welfare_prefix(relearned, pack(relearned, by_decreasing(last.bids)))
        return round(admitted.size * book.size / last.size)

    @abstractmethod
    def sell(self, book: RoundBook, supply: int) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
        """Winners and payments when ``supply`` identical slices are sold to ``book``'s bids."""


class VCGSlices(SliceAuction):
    """Clarke-pivot auction of the round's slices, on the exact b-matching of tasks to slices."""

    name = "vcg"

    def sell(self, book: RoundBook, supply: int) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
        """The highest bids win; each pays the welfare its slice would give the others."""
        outcome = run_vcg_auction(book.bids[:, None], np.zeros((book.size, 1)), [supply])
        return outcome.matched, outcome.payments


class ClinchingSlices(SliceAuction):
    """Ascending clinching auction of the round's slices on the slice polymatroid."""

    name = "clinching"

    def sell(self, book: RoundBook, supply: int) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
        """Each winner pays the clock price at which the others could no longer take its slice."""
        units = float(supply)
        outcome = run_clinching_auction(book.bids, np.zeros(book.size, dtype=np.int64),
                                        lambda s: units if s else 0.0, n_types=1)
        return outcome.units > 0.5, outcome.payments


register_mechanism("vcg", VCGSlices)
register_mechanism("clinching", ClinchingSlices)
