"""`mercato bench star`: exact allocation per scenario and solver, and all winners' payments.

Allocation is timed one-shot (solver set-up + solve, what `mercato star plan` pays) and as a
re-solve on a built solver (what each payment step pays). Payments are timed with the
default crossing search and with the paper's bisection (Algorithm 1), on the same allocation.
Targets (issue): every scenario's exact allocation <= 100 ms; all payments <= 2 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mercato.bench.timing import median_ms
from mercato.mechanisms.myerson import virtual_cost_vector
from mercato.mechanisms.workflow import (
    JunctionTreeSolver,
    WorkflowMarket,
    allocate,
    make_solver,
    star_payments,
)
from mercato.star.market import draw_costs, market_agents
from mercato.star.plan import PER_MILLION
from mercato.star.scenarios import SCENARIOS, scenario

TARGET_ALLOCATION_MS = 100.0
TARGET_PAYMENTS_MS = 2000.0


def bench_scenario(name: str, seed: int) -> dict[str, Any]:
    """Timings for one scenario instance (one trial's token noise and costs)."""
    rng = np.random.default_rng([seed, list(SCENARIOS).index(name)])
    workflow = scenario(name, rng)
    draw = draw_costs(rng)
    market = WorkflowMarket(workflow, market_agents())
    vcs = draw.virtual_costs()
    phi = virtual_cost_vector(vcs, draw.costs)
    methods = (["tree"] if workflow.is_forest() else []) + ["junction_tree", "milp"]
    solvers: dict[str, dict[str, float]] = {}
    objectives = []
    for method in methods:
        solver = make_solver(market, method)
        objectives.append(market.objective(allocate(market, phi, solver), phi))
        solvers[method] = {
            "alloc_ms": median_ms(lambda m=method: allocate(market, phi, make_solver(market, m)), repeats=7),
            "resolve_ms": median_ms(lambda s=solver: allocate(market, phi, s), repeats=7),
        }
    auto = make_solver(market)
    work = market.work(allocate(market, phi, auto))

    def pay(method: str) -> Callable[[], object]:
        return lambda: star_payments(market, auto, draw.costs, vcs, work, payment_method=method)

    crossing = star_payments(market, auto, draw.costs, vcs, work)
    bisection = star_payments(market, auto, draw.costs, vcs, work, payment_method="bisection")
    return {
        "scenario": name,
        "nodes": len(workflow.nodes),
        "edges": len(workflow.edges),
        "treewidth": JunctionTreeSolver(market).width,
        "auto_solver": auto.name,
        "winners": int((work > 0).sum()),
        "solvers": solvers,
        "objective_spread": float(np.ptp(objectives) / max(1.0, abs(objectives[0]))),
        "alloc_ms_auto": solvers[auto.name]["alloc_ms"],
        "payments_ms": median_ms(pay("crossing"), repeats=3),
        "payments_ms_bisection": median_ms(pay("bisection"), repeats=1, warmup=0),
        "total_payment_usd": float(crossing.sum() * PER_MILLION),
        "bisection_minus_crossing_usd": float((bisection.sum() - crossing.sum()) * PER_MILLION),
    }


def run(seed: int = 0, on_scenario: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Bench every scenario; the JSON-ready report with targets."""
    results = []
    for name in SCENARIOS:
        results.append(bench_scenario(name, seed))
        if on_scenario is not None:
            on_scenario(results[-1])
    return {
        "benchmark": "star",
        "seed": seed,
        "scenarios": {r["scenario"]: r for r in results},
        "targets_met": {
            f"allocation_ms_le_{TARGET_ALLOCATION_MS:g}": all(
                r["alloc_ms_auto"] <= TARGET_ALLOCATION_MS for r in results),
            f"payments_ms_le_{TARGET_PAYMENTS_MS:g}": all(
                r["payments_ms"] <= TARGET_PAYMENTS_MS for r in results),
            "solvers_agree": all(r["objective_spread"] <= 1e-9 for r in results),
        },
    }
