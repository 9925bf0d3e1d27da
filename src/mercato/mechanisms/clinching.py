"""Polymatroid clinching auction for quasi-linear bidders who each want one type of item.

Setting (paper 003, Proposition 2(iii)): K item types (slices) whose joint supply is the
polymatroid ``P(f)`` of a rank oracle ``f`` on sets of types; bidder k wants up to ``d_k`` units
of its own type ``t_k`` and values each unit at ``v_k`` (additive, no budget). This is the
polyhedral clinching auction of Goel, Mirrokni and Paes Leme (2015) -- Bhattacharya et al.'s
adaptive clinching (2010) on a polymatroid, Ausubel's (2004) auction when K = 1 -- with budgets
left out because the bidders here are quasi-linear.

Algorithm. One price clock ``p`` rises from 0. A bidder demands its unclinched units while
``p`` is below its bid and nothing once ``p`` reaches it. After ``x`` has been clinched, the
supply left is the polymatroid ``P_x = {y >= 0 : x + y in P(f)}``, of rank
``f_x(S) = min over T containing S of f(T) - x(T)``. Bidder i *clinches* what the others cannot
take even if each gets all it still demands:

    g_i(U) = max{ y(U) : y in P_x, y_j <= D_j for every other j }        (i itself uncapped)
    delta_i = min(D_i, g_i(all) - g_i(all but i)),   paid at the current price p.

Every maximal allocation to the others leaves exactly ``g_i(all) - g_i(all but i)`` for i (all
maximal vectors of a polymatroid have the same sum), so this is the amount i is sure to get. A
clinch changes ``x`` and so what others may clinch; the auction repeats until nobody clinches,
then moves the clock. On types, with the bidders of a type pooled, the truncated rank is
``min over S of f_x(S) + C(types not in S)`` (``C`` = pooled demands of the others, S must hold
i's type when i is uncapped), one vectorised pass over the ``2^K`` subsets.

Exactness. Demands change only when the clock reaches a bid, and between two bids the state
after the last round of clinches is a fixed point, so the clock jumps from bid to bid: prices
are not discretised and there is no price-step tolerance. The only tolerance is
:data:`CLINCH_TOLERANCE`: clinch amounts below it are float noise and are not made. Bidders with
equal bids drop out one at a time, the higher index first.

Properties. A bidder's only lever is the price at which it drops out, and it clinches only at
prices up to its bid, so truthful bidding is dominant (DSIC) and utilities are non-negative (IR);
payments are non-negative, so the auctioneer never runs a deficit (weak budget balance). Without
budgets the outcome is the welfare-maximising allocation with VCG payments; the tests check DSIC
by bid sweeps and the VCG identity against brute force.

Cost: the rank oracle is called ``2^K`` times per auction. A check looks at one bidder per type,
the one with the largest remaining demand (a bidder's clinchable amount grows with its own
demand, so if that one cannot clinch, no bidder of its type can): O(K^2 2^K) numpy work. All the
coming drop-outs are checked in one vectorised pass, and when only one type still demands, a
run of its equal-demand bidders clinching in full is made at once (see ``_equal_demands``), so an
auction of n unit-demand bidders for one type costs a few passes, not n.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mercato.mechanisms.rank_tables import rank_table, rank_violation, superset_min

# Clinch amounts are in item units (O(1)-O(1e3)); anything smaller is float noise.
CLINCH_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Clinch:
    """``units`` of its type clinched by ``bidder`` at ``price`` per unit."""

    bidder: int
    units: float
    price: float


@dataclass(frozen=True)
class ClinchingOutcome:
    """Units won and total payment per bidder, and every clinch in auction order."""

    units: NDArray[np.float64]
    payments: NDArray[np.float64]
    clinches: tuple[Clinch, ...]

    @property
    def revenue(self) -> float:
        """Total paid to the auctioneer (never negative: weak budget balance)."""
        return float(self.payments.sum())

    def utilities(self, true_values: ArrayLike) -> NDArray[np.float64]:
        """Quasi-linear utility of each bidder under its true per-unit value."""
        return np.asarray(true_values, dtype=np.float64) * self.units - self.payments


def run_clinching_auction(values: ArrayLike, types: ArrayLike,
                          rank: Callable[[frozenset[int]], float], n_types: int,
                          demand: ArrayLike = 1.0) -> ClinchingOutcome:
    """Run the clinching auction; ``rank`` is the supply's rank oracle on sets of type indices.

    ``values`` are per-unit bids (>= 0), ``types`` each bidder's type in ``range(n_types)`` and
    ``demand`` its unit cap (a scalar applies to all). Raises ValueError on malformed input or
    when ``rank`` is not normalised, monotone and submodular.
    """
    v, t, d = _validated(values, types, demand, n_types)
    table = rank_table(rank, n_types)
    bad = rank_violation(table)
    if bad is not None:
        raise ValueError(f"rank is not a polymatroid rank function: {bad.describe()}")
    state = _Auction(table, t, np.where(v > 0, d, 0.0))
    state.settle(0.0)
    pending = np.array([k for k in sorted(range(v.size), key=lambda k: (v[k], -k))
                        if state.remaining[k] > 0], dtype=np.int64)
    while pending.size:
        drops = state.drops_until_clinch(pending)
        if drops is None:
            break
        for k in pending[:drops]:
            state.drop(int(k))
        price = float(v[pending[drops - 1]])
        pending = pending[drops:]
        state.settle(price)
    return ClinchingOutcome(units=state.units, payments=state.payments, clinches=tuple(state.log))


class _Auction:
    """Mutable state of one auction: clinched supply per type, and per bidder what is left.

    Per type, a heap orders the bidders still in by (largest remaining demand, lowest index): its
    top is the type's representative (see :meth:`_amounts`). Entries of bidders whose demand has
    changed or who dropped out are discarded lazily when they reach the top.
    """

    def __init__(self, table: NDArray[np.float64], types: NDArray[np.int64],
                 demand: NDArray[np.float64]) -> None:
        k = int(table.size).bit_length() - 1
        self.table = table
        self.types = types
        self.remaining = demand.copy()
        self.units = np.zeros(types.size)
        self.payments = np.zeros(types.size)
        self.log: list[Clinch] = []
        # members[S, s] = 1 when type s is in subset S; own[t, S] when S holds type t.
        self.members = ((np.arange(table.size)[:, None] >> np.arange(k)) & 1).astype(np.float64)
        self.own = self.members.T > 0
        self.eye = np.eye(k)
        self.clinched = np.zeros(k)
        self.left = superset_min(table)
        self.pooled = np.bincount(types, weights=self.remaining, minlength=k)
        self.heaps: list[list[tuple[float, int]]] = [[] for _ in range(k)]
        for i in np.flatnonzero(self.remaining > 0):
            heapq.heappush(self.heaps[types[i]], (-float(self.remaining[i]), int(i)))

    def drop(self, bidder: int) -> None:
        """The clock passed ``bidder``'s bid: it demands nothing more."""
        self.pooled[self.types[bidder]] -= self.remaining[bidder]
        self.remaining[bidder] = 0.0

    def settle(self, price: float) -> None:
        """Make every clinch available at ``price``, one bidder at a time, until none is left."""
        while True:
            holders = [self._top(t) for t in range(self.eye.shape[0])]
            rep = np.array([self.remaining[h] if h >= 0 else 0.0 for h in holders])
            amount = self._amounts(self.pooled[None, :], rep[None, :])[0]
            ready = [h for h, a in zip(holders, amount, strict=True) if a > CLINCH_TOLERANCE]
            if not ready:
                return
            bidder = min(ready)
            t = int(self.types[bidder])
            got = float(amount[t])
            batch = [bidder]
            if got == self.remaining[bidder] and all(h < 0 for u, h in enumerate(holders) if u != t):
                batch = self._equal_demands(t)
            for k in batch:
                self._clinch(k, t, got, price)
            self.left = superset_min(self.table - self.members @ self.clinched)

    def _equal_demands(self, t: int) -> list[int]:
        """Type t's bidders holding its largest remaining demand, when they all clinch in full.

        Called when only type t still demands and its representative clinches all it wants. Then
        every other bidder of type t with that demand clinches all of it too, one after another:
        after a same-type clinch of d units, ``g(all)`` falls by exactly d and ``g(all but j)`` by
        at least d, so the next one's clinchable amount cannot shrink.
        """
        demand = self.remaining[self._top(t)]
        out = []
        while (k := self._top(t)) >= 0 and self.remaining[k] == demand:
            out.append(heapq.heappop(self.heaps[t])[1])
        for k in out:
            heapq.heappush(self.heaps[t], (-float(demand), k))
        return out

    def _clinch(self, bidder: int, t: int, amount: float, price: float) -> None:
        before = self.remaining[bidder]
        self.remaining[bidder] = before - amount if before - amount > CLINCH_TOLERANCE else 0.0
        self.pooled[t] -= before - self.remaining[bidder]
        self.units[bidder] += amount
        self.payments[bidder] += price * amount
        self.clinched[t] += amount
        if self.remaining[bidder] > 0:
            heapq.heappush(self.heaps[t], (-float(self.remaining[bidder]), bidder))
        self.log.append(Clinch(bidder=bidder, units=amount, price=price))

    def drops_until_clinch(self, pending: NDArray[np.int64]) -> int | None:
        """How many of ``pending`` (in drop order) must drop before someone can clinch; None: never.

        Nothing changes between drops, so all the states after 1, 2, ... drops are evaluated in
        one pass and the clock jumps to the first at which a clinch exists.
        """
        kinds = np.arange(self.eye.shape[0])
        share = self.remaining[pending][:, None] * (self.types[pending][:, None] == kinds)
        pooled = self.pooled[None, :] - np.cumsum(share, axis=0)
        # Largest remaining demand per type among bidders still in: a suffix maximum over pending.
        rep = np.vstack([np.maximum.accumulate(share[::-1], axis=0)[::-1][1:], np.zeros_like(share[:1])])
        ready = (self._amounts(pooled, rep) > CLINCH_TOLERANCE).any(axis=1)
        return int(np.argmax(ready)) + 1 if ready.any() else None

    def _top(self, t: int) -> int:
        """Index of type t's representative, or -1 when no bidder of type t demands anything."""
        heap = self.heaps[t]
        while heap and -heap[0][0] != self.remaining[heap[0][1]]:
            heapq.heappop(heap)
        return heap[0][1] if heap else -1

    def _amounts(self, pooled: NDArray[np.float64], rep: NDArray[np.float64]) -> NDArray[np.float64]:
        """Clinchable amount of each type's representative (demand ``rep``), one row per state.

        ``value[j, t, S] = f_x(S) + the others' pooled demand on the types outside S``; the others
        are everyone but the representative. A bidder's amount grows with its own demand (its demand
        leaves the others' pool), so if the largest-demand bidder of a type cannot clinch, none can.
        """
        others = pooled[:, None, :] - rep[:, :, None] * self.eye[None, :, :]
        value = self.left + others.sum(axis=2)[..., None] - others @ self.members.T
        without_i = value.min(axis=2)
        with_i = np.where(self.own[None, :, :], value, np.inf).min(axis=2)
        return np.where(rep > 0, np.minimum(rep, with_i - without_i), 0.0)


def _validated(values: ArrayLike, types: ArrayLike, demand: ArrayLike,
               n_types: int) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """Bids, types and demands as arrays, or ValueError naming the bad entry."""
    if not isinstance(n_types, int | np.integer) or n_types < 1:
        raise ValueError(f"n_types must be a positive integer, got {n_types!r}")
    try:
        v = np.asarray(values, dtype=np.float64)
        raw_t = np.asarray(types, dtype=np.float64)
        d = np.broadcast_to(np.asarray(demand, dtype=np.float64), v.shape).copy()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"values, types and demand must be numeric and of one length: {exc}") from None
    if v.ndim != 1 or raw_t.shape != v.shape:
        raise ValueError(f"values and types must be 1-D of one length, got {v.shape} and {raw_t.shape}")
    for name, arr in (("values", v), ("demand", d)):
        bad = ~np.isfinite(arr) | (arr < 0)
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(f"{name} must be finite and non-negative, bidder {k} has {arr[k]:g}")
    bad_type = ~np.isfinite(raw_t) | (raw_t != np.round(raw_t)) | (raw_t < 0) | (raw_t >= n_types)
    if bad_type.any():
        k = int(np.argmax(bad_type))
        raise ValueError(f"types must be integers in [0, {n_types}), bidder {k} has {raw_t[k]:g}")
    return v, raw_t.astype(np.int64), d
