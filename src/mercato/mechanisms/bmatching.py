"""Exact maximum-weight bipartite b-matching of requests (rows) to capacitated agents (columns).

Each agent i is expanded into ``min(capacity[i], usable pairs of i)`` identical slot
columns, and the assignment problem is solved exactly with scipy's ``linear_sum_assignment``
(a shortest-augmenting-path Jonker-Volgenant solver). Pairs that are forbidden (NaN / -inf)
or have welfare <= 0 get weight 0 in the expanded matrix, which is the same as leaving the
request unmatched, so the optimum maximises total welfare and never trades welfare for a
larger number of matches (the defect of a min-cost *max*-flow).

Warm start: given prices, the matrix is made square with zero rows ("this slot stays empty")
or zero columns ("this request stays unmatched"), so every slot column is matched exactly once and
subtracting any per-agent price from an agent's columns shifts every assignment's total by the
same constant. The optimum is unchanged, whatever the prices; but with prices close to the
market-clearing ones (the last round's, in a gateway) most requests find a free slot at the
first try, and the solver's augmenting paths stay short. In a contested 200 x 100 market
this cuts the solve from about 5 ms to 0.5-1.7 ms. Rows go highest-value first, which helps
a cold start by about a third.

Exact pruning: request j never needs more than its best agents whose slots add up to N. Had
j an optimal agent outside that set T, the other N - 1 requests could not fill T's N slots, so
j could move to a free agent of T at no loss. Agents outside every request's T are dropped
before solving; in real markets, where every buyer prefers the same cheap backends, that
removes about half the columns (and the solver's time) without changing the optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linear_sum_assignment

from mercato.mechanisms.validation import as_capacity, as_matrix

# Pruning costs a sort of the welfare matrix: worth it only for larger batches that lose agents.
_PRUNE_MIN_REQUESTS = 48
_PRUNE_MIN_SHARE = 0.9


@dataclass(frozen=True)
class Matching:
    """Result of :func:`solve_bmatching`: ``assignment[j]`` is request j's agent or -1."""

    assignment: NDArray[np.int64]
    welfare: float


def usable_weights(welfare: NDArray[np.float64]) -> NDArray[np.float64]:
    """Welfare with forbidden and non-positive pairs set to 0 (never worth using)."""
    clean = np.where(np.isnan(welfare), 0.0, welfare)
    return np.maximum(clean, 0.0)


def solve_usable(weights: NDArray[np.float64], capacity: NDArray[np.int64],
                 prices: NDArray[np.float64] | None = None) -> NDArray[np.int64]:
    """Optimal assignment for validated non-negative ``weights``; pairs of weight 0 are unused.

    ``prices`` (M,), finite, only speeds the solve up (see module doc); the optimum is the same.
    """
    n, m = weights.shape
    assignment = np.full(n, -1, dtype=np.int64)
    if n == 0 or m == 0:
        return assignment
    positive = weights > 0.0
    slots = np.minimum(capacity, positive.sum(axis=0))
    if slots.sum() == 0:
        return assignment
    agents_kept = _sufficient_agents(weights, slots)
    slot_agent = np.repeat(agents_kept, slots[agents_kept])
    order = np.argsort(-weights.max(axis=1), kind="stable")
    n_slots = slot_agent.size
    matrix = np.take(weights[order], slot_agent, axis=1)
    if prices is not None:
        square = np.zeros((max(n, n_slots), max(n, n_slots)))
        square[:n, :n_slots] = matrix
        square[:, :n_slots] -= prices[slot_agent]
        matrix = square
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    real = (rows < n) & (cols < n_slots)
    requests, agents = order[rows[real]], slot_agent[cols[real]]
    used = positive[requests, agents]
    assignment[requests[used]] = agents[used]
    return assignment


def _sufficient_agents(weights: NDArray[np.float64], slots: NDArray[np.int64]) -> NDArray[np.int64]:
    """Agents that are among some request's best agents holding N slots (see module doc)."""
    n, m = weights.shape
    everyone = np.arange(m)
    if n < _PRUNE_MIN_REQUESTS or slots.sum() <= n:
        return everyone
    keep = np.zeros(m, dtype=bool)
    if (slots == slots[0]).all():  # equal slots: every request needs exactly its best k agents
        k = -(-n // int(slots[0]))
        keep[np.argpartition(-weights, k - 1, axis=1)[:, :k].ravel()] = True
    else:
        order = np.argsort(-weights, axis=1, kind="stable")
        needed = (np.cumsum(slots[order], axis=1) < n).sum(axis=1) + 1  # best agents holding n slots
        for size in np.unique(needed):
            keep[order[needed == size, :size].ravel()] = True
    return everyone[keep] if keep.sum() < _PRUNE_MIN_SHARE * m else everyone


def solve_bmatching(welfare: ArrayLike, capacity: ArrayLike) -> Matching:
    """Maximise total welfare: each request gets at most one agent, agent i at most capacity[i].

    ``welfare`` is (N requests, M agents); NaN or -inf marks a forbidden pair and a pair with
    welfare <= 0 is never used. Raises ValueError on malformed input.
    """
    w = as_matrix("welfare", welfare, allow_nan=True, allow_neg_inf=True)
    cap = as_capacity(capacity, w.shape[1])
    assignment = solve_usable(usable_weights(w), cap)
    return Matching(assignment=assignment, welfare=matched_welfare(w, assignment))


def matched_welfare(welfare: NDArray[np.float64], assignment: NDArray[np.int64]) -> float:
    """Total welfare of the matched pairs of ``assignment``."""
    rows = np.flatnonzero(assignment >= 0)
    return float(welfare[rows, assignment[rows]].sum())
