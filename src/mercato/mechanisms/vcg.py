"""VCG (Clarke pivot) auction over the exact b-matching, with all payments from one shortest-path pass.

Payment of a matched request j at agent a (IEMAS Eq. 8):
``p_j = W(C \\ {j}) - (W(C) - w_j) + c_j``. Removing j frees one slot at a, and the optimum of
the reduced market is the old one minus ``w_j`` plus the best use of that freed slot. The best
use is a chain: some request moves into a (from being unmatched, or from agent b, whose freed
slot is used in turn, and so on). On the optimal residual graph these chains are paths over the
M agent nodes, and optimality rules out positive cycles, so one Bellman-Ford pass gives the
value ``g(a)`` of a freed slot at every agent at once. Then ``p_j = c_j + g(a)``: the
externality of j is the minimal market-clearing price of a slot at its agent. Cost: one
assignment solve plus O(iterations x M^2), instead of N + 1 solves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mercato.mechanisms.bmatching import matched_welfare, solve_usable, usable_weights
from mercato.mechanisms.validation import as_capacity, as_matrix, as_prices, same_shape

# Improvements smaller than this are float noise, not a better chain (welfare values are O(1)-O(1e3)).
_TOLERANCE = 1e-12
# Longest run of one agent's requests reduced rank by rank before falling back to reduceat.
_LAYERED_MAX_RUN = 32


@dataclass(frozen=True)
class AuctionOutcome:
    """Allocation and Clarke-pivot payments of one auction round.

    ``payments[j]`` is what request j pays (0 when unmatched); ``externality = payments - cost``
    is the welfare j's presence takes from the others, and ``surplus`` (their sum) is what the
    hub keeps after paying every agent its cost. ``slot_prices[a]`` is the market-clearing price
    of a slot at agent a (what one more request placed there would pay above cost); feeding it
    to the next round as ``warm_prices`` speeds that round's solve.
    """

    assignment: NDArray[np.int64]
    welfare: float
    payments: NDArray[np.float64]
    externality: NDArray[np.float64]
    surplus: float
    slot_prices: NDArray[np.float64]

    @property
    def matched(self) -> NDArray[np.bool_]:
        """Mask of requests that won an agent."""
        return self.assignment >= 0


def auction_welfare(values: ArrayLike, costs: ArrayLike) -> NDArray[np.float64]:
    """Validated per-pair welfare ``values - costs``; forbidden pairs come out as -inf.

    ``values`` may mark a forbidden pair with NaN or -inf; ``costs`` must be free of NaN and may
    forbid a pair with +inf.
    """
    v = as_matrix("values", values, allow_nan=True, allow_neg_inf=True)
    c = as_matrix("costs", costs, allow_nan=False, allow_neg_inf=False, allow_pos_inf=True)
    same_shape("values", v, "costs", c)
    forbidden = ~(v > -np.inf) | (c == np.inf)  # NaN or -inf value, +inf cost
    with np.errstate(invalid="ignore"):
        w = v - c
    w[forbidden] = -np.inf
    return w


def slot_values(weights: NDArray[np.float64], assignment: NDArray[np.int64]) -> NDArray[np.float64]:
    """Value g(a) of one extra free slot at each agent a, given an optimal assignment.

    ``weights`` are the usable (non-negative) weights; a pair of weight 0 is unusable.
    """
    m = weights.shape[1]
    unmatched = assignment < 0
    # Chains that end by pulling in an unmatched request (or by leaving the slot empty: 0).
    base = np.zeros(m)
    if unmatched.any():
        base = np.maximum(base, weights[unmatched].max(axis=0))
    matched_rows = np.flatnonzero(~unmatched)
    if matched_rows.size == 0:
        return base
    # Edge b -> a: best gain of moving one of b's requests to a, which frees a slot at b.
    order = np.argsort(assignment[matched_rows], kind="stable")
    rows = matched_rows[order]
    owners = assignment[rows]
    # Moving into an unusable pair (weight 0) is the same as unmatching the request; optimality
    # of the assignment makes such a chain worth <= 0, so those entries need no masking.
    gain = weights[rows]
    gain -= gain[np.arange(rows.size), owners][:, None]
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    sources = owners[starts]
    edges = _group_max(gain, starts)
    edges[np.arange(sources.size), sources] = -np.inf
    value = base.copy()
    for _ in range(m):
        relaxed = np.maximum(base, (edges + value[sources][:, None]).max(axis=0))
        if not (relaxed > value + _TOLERANCE).any():
            break
        value = np.maximum(value, relaxed)
    return value


def _lone_request(weights: NDArray[np.float64],
                  capacity: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.float64]] | None:
    """Assignment and slot values of a one-request market in closed form, None if it needs the solver.

    A lone request takes its best usable agent with a slot and takes nothing from anyone, and
    one more slot at agent a is worth ``max(0, w_a - w_best)`` (moving there), or ``w_a`` when
    the request is unmatched: what :func:`slot_values` computes. This is a gateway's usual
    round at light load, where the solver's setup would cost more than the decision. Ties go to
    the solver, so that the tie-break is always the solver's.
    """
    if weights.shape[0] != 1 or weights.shape[1] == 0:
        return None
    row = weights[0]
    usable = np.where(capacity > 0, row, 0.0)
    best = int(np.argmax(usable))
    top = usable[best]
    if top <= 0.0:
        return np.full(1, -1, dtype=np.int64), row.copy()
    if np.count_nonzero(usable == top) > 1:
        return None
    values = np.maximum(row - top, 0.0)
    values[best] = 0.0
    return np.array([best], dtype=np.int64), values


def _group_max(rows: NDArray[np.float64], starts: NDArray[np.intp]) -> NDArray[np.float64]:
    """Column-wise max of each run of consecutive rows beginning at ``starts``.

    ``np.maximum.reduceat`` pays a per-run overhead that dominates when runs are short (an
    agent holds at most its few slots), so short runs are reduced one rank at a time instead.
    """
    sizes = np.diff(np.r_[starts, rows.shape[0]])
    longest = int(sizes.max())
    if longest > _LAYERED_MAX_RUN:
        return np.maximum.reduceat(rows, starts, axis=0)
    out = rows[starts].copy()
    for rank in range(1, longest):
        groups = np.flatnonzero(sizes > rank)
        out[groups] = np.maximum(out[groups], rows[starts[groups] + rank])
    return out


def outcome_from(welfare: NDArray[np.float64], costs: NDArray[np.float64],
                 assignment: NDArray[np.int64], externality: NDArray[np.float64],
                 slot_prices: NDArray[np.float64]) -> AuctionOutcome:
    """Assemble an :class:`AuctionOutcome` from an allocation and per-request externalities."""
    matched = assignment >= 0
    rows = np.flatnonzero(matched)
    externality = np.where(matched, externality, 0.0)
    payments = np.zeros(assignment.shape[0])
    payments[rows] = costs[rows, assignment[rows]] + externality[rows]
    return AuctionOutcome(
        assignment=assignment,
        welfare=matched_welfare(welfare, assignment),
        payments=payments,
        externality=externality,
        surplus=float(externality.sum()),
        slot_prices=slot_prices,
    )


def run_vcg_auction(values: ArrayLike, costs: ArrayLike, capacity: ArrayLike, *,
                    warm_prices: ArrayLike | None = None) -> AuctionOutcome:
    """Welfare-maximising allocation of requests to agents with Clarke-pivot payments.

    ``values`` and ``costs`` are (N requests, M agents); ``capacity`` has one entry per agent.
    ``warm_prices`` (M,), typically the previous round's ``slot_prices``, makes the solve
    faster and never changes the outcome, except that between exactly equally good allocations
    it may pick another one (same welfare, its own Clarke payments). Raises ValueError on
    malformed input; N = 0 or M = 0 gives an empty outcome.
    """
    w = auction_welfare(values, costs)
    c = np.asarray(costs, dtype=np.float64)
    cap = as_capacity(capacity, w.shape[1])
    warm = None if warm_prices is None else as_prices(warm_prices, w.shape[1])
    weights = usable_weights(w)
    lone = _lone_request(weights, cap)
    if lone is not None:
        assignment, g = lone
    else:
        assignment = solve_usable(weights, cap, warm)
        if assignment.size == 0 or w.shape[1] == 0:
            return outcome_from(w, c, assignment, np.zeros(assignment.shape[0]), np.zeros(w.shape[1]))
        g = slot_values(weights, assignment)
    externality = np.where(assignment >= 0, g[np.maximum(assignment, 0)], 0.0)
    return outcome_from(w, c, assignment, externality, g)


def run_vcg_auction_naive(values: ArrayLike, costs: ArrayLike, capacity: ArrayLike) -> AuctionOutcome:
    """The same auction with payments from N + 1 full re-solves: the test oracle and baseline."""
    w = auction_welfare(values, costs)
    c = np.asarray(costs, dtype=np.float64)
    cap = as_capacity(capacity, w.shape[1])
    weights = usable_weights(w)
    assignment = solve_usable(weights, cap)
    total = matched_welfare(w, assignment)
    externality = np.zeros(assignment.shape[0])
    for j in np.flatnonzero(assignment >= 0):
        others = np.delete(weights, j, axis=0)
        without_j = float(matched_welfare(others, solve_usable(others, cap)))
        externality[j] = without_j - (total - w[j, assignment[j]])
    prices = slot_values(weights, assignment) if assignment.size and w.shape[1] else np.zeros(w.shape[1])
    return outcome_from(w, c, assignment, externality, prices)
