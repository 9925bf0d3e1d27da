"""`mercato star plan`: run STAR on a user's workflow and bidders, next to both baselines.

Money is in $: bids are $ per 1M output tokens and work is in tokens, so every amount is
``price * tokens / 1e6``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mercato.mechanisms.myerson import virtual_cost_vector
from mercato.mechanisms.workflow import (
    Workflow,
    WorkflowMarket,
    allocate,
    make_solver,
    run_homogeneous,
    run_myopic,
    star_payments,
)
from mercato.star.config import Bidders

PER_MILLION = 1e-6


def plan(workflow: Workflow, bidders: Bidders, solver: str = "auto", payment_method: str = "crossing"
         ) -> dict[str, Any]:
    """Allocation, per-agent payment/cost/utility, solver and timings, as a JSON-ready dict.

    An agent bidding above its reserve is refused: its virtual cost is reported as ``None``.
    """
    market = WorkflowMarket(workflow, bidders.agents)
    bids = market.check_bids(bidders.bids)
    start = time.perf_counter()
    engine = make_solver(market, solver)
    phi = virtual_cost_vector(bidders.virtual_costs, bids)
    assignment = allocate(market, phi, engine)
    solve_ms = (time.perf_counter() - start) * 1e3
    work = market.work(assignment)
    start = time.perf_counter()
    payments = star_payments(market, engine, bids, bidders.virtual_costs, work, payment_method=payment_method)
    payment_ms = (time.perf_counter() - start) * 1e3
    cost = bidders.costs * work
    nodes = [{"node": n.name, "role": n.role, "difficulty": n.difficulty,
              "agent": market.agents[a].name, "tier": market.agents[a].tier}
             for n, a in zip(workflow.nodes, assignment.tolist(), strict=True)]
    agents = [{"agent": a.name, "tier": a.tier, "bid": float(bids[i]),
               "virtual_cost": float(phi[i]) if np.isfinite(phi[i]) else None,
               "nodes": int((assignment == i).sum()), "work_tokens": float(work[i]),
               "payment": float(payments[i] * PER_MILLION), "cost": float(cost[i] * PER_MILLION),
               "utility": float((payments[i] - cost[i]) * PER_MILLION)}
              for i, a in enumerate(market.agents)]
    baselines = {}
    for outcome in (run_myopic(market, bids, bidders.reserves),
                    run_homogeneous(market, bids, bidders.reserves)):
        baselines[outcome.mechanism] = {"total_payment": outcome.total_payment * PER_MILLION,
                                        "true_cost": outcome.true_cost(bidders.costs) * PER_MILLION}
    return {
        "solver": engine.name,
        "solve_ms": solve_ms,
        "payment_method": payment_method,
        "payment_ms": payment_ms,
        "total_payment": float(payments.sum() * PER_MILLION),
        "true_cost": float(cost.sum() * PER_MILLION),
        "virtual_objective": float(market.objective(assignment, phi) * PER_MILLION),
        "fresh_transfer_tokens": market.fresh_transfer_tokens(assignment),
        "nodes": nodes,
        "agents": agents,
        "baselines": baselines,
    }
