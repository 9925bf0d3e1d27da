"""Critical-value payments (paper Eq. 4) by recursive interval splitting (Appendix C).

Agent i's work W_i(b) is a non-increasing step function of its bid (see ``market``). Its
truthful payment is ``P_i = sum_k z_k * (drop of W_i at z_k) + reserve_i * W_i(reserve_i)``:
each slice of work is paid the highest bid at which the agent would still have kept it, and
work it keeps even at its reserve is paid the reserve. Two ways to find the breakpoints z_k:

``crossing`` (default). In virtual-cost space the optimum ``J*(phi_i)`` is the lower envelope of
one line ``phi_i * W_i(A) + rest(A)`` per allocation A. An interval whose ends have different
allocations is split where their two lines cross; if solving there finds nothing cheaper than
the crossing, it is a breakpoint, exact to float precision; otherwise the new allocation
splits the interval again. About 2K + 1 solves for K breakpoints.

``bisection``. The paper's Algorithm 1: split intervals of bids at the midpoint, keep the
halves whose ends differ, stop at width ``tol * reserve``. K * log2(1 / tol) solves; each
breakpoint is placed within half that width, so the payment is off by at most
``tol * reserve * W_i / 2``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mercato.mechanisms.myerson import VirtualCost, virtual_cost_vector
from mercato.mechanisms.workflow.market import WorkflowMarket
from mercato.mechanisms.workflow.solve import AllocationSolver, allocate

PAYMENT_METHODS: tuple[str, ...] = ("crossing", "bisection")
# crossing: a crossing is a breakpoint unless a solve beats it by more than this (relative).
CROSSING_RTOL = 1e-9
# bisection: intervals narrower than this fraction of the reserve are breakpoints (Algorithm 1's eps).
BISECTION_TOL = 1e-7
# Safety bound on solves per agent, far above what either method needs on real instances.
MAX_SOLVES = 10_000


@dataclass(frozen=True)
class Breakpoint:
    """Work ``drop`` lost when the bid rises past ``bid``."""

    bid: float
    drop: float


@dataclass(frozen=True)
class _Point:
    """One solve while agent i's virtual cost is ``phi``: its work and everyone else's cost."""

    phi: float
    work: float
    rest: float


def _probe(market: WorkflowMarket, solver: AllocationSolver, phis: NDArray[np.float64],
           agent: int) -> Callable[[float], _Point]:
    def at(phi_i: float) -> _Point:
        phi = phis.copy()
        phi[agent] = phi_i
        work = market.work(allocate(market, phi, solver))
        others = np.delete(np.arange(phi.size), agent)
        used = others[work[others] > 0]
        return _Point(phi_i, float(work[agent]), float(np.dot(phi[used], work[used])))
    return at


def _crossing(at: Callable[[float], _Point], low: _Point, high: _Point) -> list[tuple[float, float]]:
    found: list[tuple[float, float]] = []
    stack = [(low, high)]
    solves = 0
    while stack:
        left, right = stack.pop()
        if left.work - right.work <= 1e-12 * max(1.0, left.work):
            continue
        cross = (right.rest - left.rest) / (left.work - right.work)
        cross = min(max(cross, left.phi), right.phi)
        mid = at(cross)
        solves += 1
        line = cross * left.work + left.rest
        if cross * mid.work + mid.rest < line - CROSSING_RTOL * max(1.0, abs(line)) \
                and solves <= MAX_SOLVES:
            stack += [(left, mid), (mid, right)]
        else:
            found.append((cross, left.work - right.work))
    return found


def _bisection(work_at_bid: Callable[[float], float], bid: float, reserve: float
               ) -> list[tuple[float, float]]:
    eps = BISECTION_TOL * max(reserve, 1e-300)
    memo: dict[float, float] = {}

    def q(b: float) -> float:
        if b not in memo:
            memo[b] = work_at_bid(b)
        return memo[b]

    found: list[tuple[float, float]] = []
    queue = [(bid, reserve)]
    while queue and len(memo) <= MAX_SOLVES:
        left, right = queue.pop()
        q_left, q_right = q(left), q(right)
        if q_left == q_right:
            continue
        mid = 0.5 * (left + right)
        if right - left < eps:
            found.append((mid, q_left - q_right))
            continue
        q_mid = q(mid)
        if q_left != q_mid:
            queue.append((left, mid))
        if q_mid != q_right:
            queue.append((mid, right))
    return found


def check_payment_method(method: str) -> None:
    """Raise ValueError unless ``method`` is one of :data:`PAYMENT_METHODS`."""
    if method not in PAYMENT_METHODS:
        raise ValueError(f"unknown payment method '{method}'; choose one of {', '.join(PAYMENT_METHODS)}")


def critical_payment(market: WorkflowMarket, solver: AllocationSolver, bids: NDArray[np.float64],
                     virtual_costs: Sequence[VirtualCost], agent: int, method: str = "crossing"
                     ) -> tuple[float, list[Breakpoint]]:
    """Agent ``agent``'s truthful payment and the breakpoints of its work above its bid."""
    check_payment_method(method)
    vc = virtual_costs[agent]
    phis = virtual_cost_vector(virtual_costs, bids)
    at = _probe(market, solver, phis, agent)
    bid = float(bids[agent])
    reserve = vc.reserve
    if bid > reserve:
        return 0.0, []
    top = at(vc.scalar(reserve))
    if method == "crossing":
        raw = [(vc.inverse(phi), drop) for phi, drop in _crossing(at, at(phis[agent]), top)]
    else:
        raw = _bisection(lambda b: at(vc.scalar(b)).work, bid, reserve)
    points = sorted((Breakpoint(max(z, bid), drop) for z, drop in raw), key=lambda p: p.bid)
    payment = sum(p.bid * p.drop for p in points) + reserve * top.work
    return float(payment), points
