"""STAR: allocate by minimum total virtual cost, pay each winner its critical values.

Truthful in dominant strategies because (a) the allocation is an exact optimum, so each
agent's work can only fall as its bid rises, and (b) each slice of work is paid the highest
bid that would still have won it, so no misreport changes a payment except by changing the
work, which never helps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mercato.mechanisms.myerson import VirtualCost, virtual_cost_vector
from mercato.mechanisms.workflow.market import WorkflowMarket
from mercato.mechanisms.workflow.outcome import ProcurementOutcome
from mercato.mechanisms.workflow.payments import check_payment_method, critical_payment
from mercato.mechanisms.workflow.solve import AllocationSolver, allocate, make_solver


def star_payments(market: WorkflowMarket, solver: AllocationSolver, bids: NDArray[np.float64],
                  virtual_costs: Sequence[VirtualCost], work: NDArray[np.float64], *,
                  payment_method: str = "crossing", payees: Sequence[int] | None = None
                  ) -> NDArray[np.float64]:
    """Critical-value payment of every agent with work (only ``payees`` when given)."""
    check_payment_method(payment_method)
    payments = np.zeros(market.n_agents)
    for i in range(market.n_agents) if payees is None else payees:
        if work[i] > 0:
            payments[i] = critical_payment(market, solver, bids, virtual_costs, i, payment_method)[0]
    return payments


def run_star(market: WorkflowMarket, bids: ArrayLike, virtual_costs: Sequence[VirtualCost], *,
             solver: AllocationSolver | str = "auto", payment_method: str = "crossing",
             payees: Sequence[int] | None = None) -> ProcurementOutcome:
    """Allocate and pay. ``payees`` limits payment computation to those agents (all by default)."""
    b = market.check_bids(bids)
    if len(virtual_costs) != market.n_agents:
        raise ValueError(f"need one virtual cost per agent ({market.n_agents}), got {len(virtual_costs)}")
    engine = make_solver(market, solver) if isinstance(solver, str) else solver
    assignment = allocate(market, virtual_cost_vector(virtual_costs, b), engine)
    work = market.work(assignment)
    payments = star_payments(market, engine, b, virtual_costs, work, payment_method=payment_method,
                             payees=payees)
    return ProcurementOutcome("star", assignment, work, payments, engine.name)
