"""Serve every request: VCG over the allocations that leave no request out.

A gateway does not turn a request away because its predicted welfare is negative (a long prompt
at a low bid costs more than the buyer's value); it serves it anyway, and IEMAS sends such
requests to a greedy fallback outside the auction, where they ignore one another and pile onto
the cheapest backend. Here they stay inside the mechanism instead: the allocation maximises
welfare over the allocations that serve every request, and Clarke-pivot payments are taken in
the same set.

The set is reached by adding a per-row constant ``B_i`` to every allowed pair of row i. A
matching that serves every row then gains ``sum(B)`` whatever it does, so among complete
matchings the optimum is unchanged; and ``B_i`` exceeds what any re-arrangement of the other
rows can gain (N times the spread of the weights), so the solver always prefers serving one more
request. The constants cancel in the Clarke externality ``W(without i) - (W - w_i)`` because
both sides serve the same other rows, so payments are those of the restricted set. Nothing in
``B`` depends on a request's own report beyond a constant that cancels, and the allocation set
does not depend on reports at all, so truthful reporting stays a dominant strategy (Groves).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mercato.mechanisms.vcg import AuctionOutcome, run_vcg_auction


def serve_all_shift(welfare: NDArray[np.float64], capacity: NDArray[np.int64],
                    spread: float = 0.0) -> NDArray[np.float64] | None:
    """(N,) per-row constants that make the optimum serve every request, or None if it cannot.

    ``welfare`` (N, M), NaN or -inf where forbidden; ``spread`` is the largest slot penalty
    (congestion) on top of it. None when there are more requests than slots or a row has no
    allowed pair: then no allocation serves everyone.
    """
    n = welfare.shape[0]
    finite = np.isfinite(welfare)
    if n == 0 or n > int(capacity.sum()) or not finite.any(axis=1).all():
        return None
    ok = welfare[finite]
    width = float(ok.max() - ok.min()) + spread + 1.0
    low = np.min(np.where(finite, welfare, np.inf), axis=1)
    return np.maximum(-low, 0.0) + spread + n * width


def serve_all(solve: Callable[[NDArray[np.float64]], AuctionOutcome], values: NDArray[np.float64],
              costs: NDArray[np.float64], capacity: NDArray[np.int64], spread: float = 0.0) -> AuctionOutcome:
    """``solve(values)`` over the allocations that serve everyone, or plain when none does.

    ``solve`` is any exact VCG solve of the market (plain, warm-started or congestion-priced).
    Model limits can leave no complete allocation even when the shift exists; a solve that
    leaves a row unmatched is then redone without it.
    """
    shift = serve_all_shift(values - costs, capacity, spread)
    if shift is not None:
        outcome = solve(values + shift[:, None])
        if outcome.matched.all():
            return outcome
    return solve(values)


def run_serve_all_auction(values: ArrayLike, costs: ArrayLike, capacity: ArrayLike) -> AuctionOutcome:
    """VCG over the allocations that serve everyone, or the plain auction when none does.

    Same arguments and outcome as :func:`mercato.mechanisms.vcg.run_vcg_auction`.
    """
    c = np.asarray(costs, dtype=np.float64)
    cap = np.asarray(capacity, dtype=np.int64)
    return serve_all(lambda v: run_vcg_auction(v, c, cap), np.asarray(values, dtype=np.float64), c, cap)
