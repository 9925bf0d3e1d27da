"""VCG over slots that get worse as they fill: congestion priced inside the auction.

The k-th request a backend takes in one round queues and prefills beside the k-1 before it, so
its slots are not alike: slot k of agent a costs request i a penalty ``penalty[i, a, k]`` that
does not fall with k. Expanding every agent into its slots keeps the allocation an assignment
problem (rows: requests; columns: slots, plus "unmatched"), so the welfare optimum is exact and
Clarke-pivot payments keep truthful reporting a dominant strategy: a request pays its cost plus
the welfare its presence takes from the others, ``W(without i) - (W - w_i)``, found here by one
re-solve per matched request (rounds hold tens of requests, so this stays in milliseconds).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mercato.mechanisms.bmatching import matched_welfare, solve_usable, usable_weights
from mercato.mechanisms.validation import as_capacity
from mercato.mechanisms.vcg import AuctionOutcome, auction_welfare


def _slot_weights(welfare: NDArray[np.float64], penalty: NDArray[np.float64],
                  capacity: NDArray[np.int64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """(N, total slots) weights ``w - penalty`` (-inf where forbidden) and each column's agent."""
    agent = np.repeat(np.arange(welfare.shape[1]), capacity)
    rank = np.concatenate([np.arange(c) for c in capacity]) if agent.size else np.zeros(0, np.int64)
    return welfare[:, agent] - penalty[:, agent, rank], agent


def _best(weights: NDArray[np.float64]) -> tuple[float, NDArray[np.int64]]:
    """Optimal welfare and each row's slot column (-1: unmatched): a b-matching with one slot per column."""
    usable = usable_weights(weights)
    slot = solve_usable(usable, np.ones(weights.shape[1], dtype=np.int64))
    return matched_welfare(usable, slot), slot


def run_congestion_auction(values: ArrayLike, costs: ArrayLike, penalty: ArrayLike,
                           capacity: ArrayLike) -> AuctionOutcome:
    """Exact allocation over congestible slots with Clarke-pivot payments.

    ``values``, ``costs`` as in :func:`mercato.mechanisms.vcg.run_vcg_auction` (N, M);
    ``penalty`` (N, M, S) with S >= min(largest capacity, N), each ``penalty[i, a]`` finite, >= 0
    and non-decreasing in the slot rank. ``slot_prices[a]`` is the least externality paid at agent
    a (0 where none is matched). N requests fill at most N slots of an agent, and penalties never
    fall with the rank, so only an agent's first min(capacity, N) slots are ever worth solving over.
    """
    w = auction_welfare(values, costs)
    c = np.asarray(costs, dtype=np.float64)
    n, m = w.shape
    cap = np.minimum(as_capacity(capacity, m), n)
    p = np.asarray(penalty, dtype=np.float64)
    if p.shape[:2] != (n, m) or p.ndim != 3 or (m and p.shape[2] < cap.max(initial=0)):
        raise ValueError(f"penalty must have shape ({n}, {m}, S), S >= min(largest capacity, N); "
                         f"got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or (np.diff(p, axis=2) < 0).any():
        raise ValueError("penalty must be finite, >= 0 and non-decreasing in the slot rank")
    weights, agent = _slot_weights(w, p, cap)
    total, slot = _best(weights)
    won = slot >= 0  # index only the matched rows: ``agent`` is empty when no agent has a slot
    assignment = np.full(n, -1, dtype=np.int64)
    assignment[won] = agent[slot[won]]
    externality = np.zeros(n)
    for i in np.flatnonzero(won):
        others, _ = _best(np.delete(weights, i, axis=0))
        externality[i] = max(0.0, others - (total - weights[i, slot[i]]))
    payments = np.zeros(n)
    payments[won] = c[won, assignment[won]] + externality[won]
    prices = np.zeros(m)
    for a in range(m):
        at = won & (assignment == a)
        prices[a] = externality[at].min() if at.any() else 0.0
    return AuctionOutcome(assignment=assignment, welfare=total, payments=payments, externality=externality,
                          surplus=float(externality.sum()), slot_prices=prices)
