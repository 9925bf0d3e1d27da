"""`mercato experiment star`: the STAR paper's Table 1 re-run, with its numbers beside ours.

Per scenario S1-S4 and trial: fresh token noise and market costs (``mercato.star``), then STAR
(exact allocation + critical-value payments), the myopic and the homogeneous second-price
baselines, all on truthful bids. Also: the "broadcaster trap" breakdown (nodes STAR gives to
a dearer agent than the cheapest capable one, and what that buys), individual rationality on
every trial, and an empirical DSIC sweep of every agent's bid on the first trials.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mercato.mechanisms.myerson import VirtualCost
from mercato.mechanisms.workflow import (
    Agent,
    AllocationSolver,
    ProcurementOutcome,
    WorkflowMarket,
    check_procurement_dsic,
    check_procurement_ir,
    make_solver,
    run_homogeneous,
    run_myopic,
    run_star,
)
from mercato.mechanisms.workflow.properties import ProcurementMechanism
from mercato.reporting import write_csv, write_json
from mercato.star.market import DEFAULT_INPUT_RATIO, TrialCosts, draw_costs, market_agents
from mercato.star.plan import PER_MILLION
from mercato.star.scenarios import SCENARIOS, scenario

MECHANISMS = ("star", "myopic", "homogeneous")
# Paper Table 1: mean and std of the total payment ($) per mechanism ...
PAPER_PAYMENTS: dict[str, dict[str, tuple[float, float]]] = {
    "S1": {"star": (4.03, 0.81), "myopic": (4.48, 0.85), "homogeneous": (5.14, 0.98)},
    "S2": {"star": (5.18, 0.44), "myopic": (6.72, 0.53), "homogeneous": (7.80, 0.64)},
    "S3": {"star": (1.90, 0.23), "myopic": (2.10, 0.25), "homogeneous": (2.38, 0.29)},
    "S4": {"star": (1.58, 0.19), "myopic": (1.96, 0.24), "homogeneous": (2.24, 0.28)},
}
# ... and STAR's payment reduction (%) vs myopic and vs homogeneous.
PAPER_REDUCTIONS: dict[str, tuple[float, float]] = {
    "S1": (10.0, 21.6), "S2": (22.9, 33.6), "S3": (9.5, 20.2), "S4": (19.4, 29.5)}
# The choices the paper leaves open, swept: input price as a share of output price (it cites
# input 2x-8x cheaper) and cached input as a share of fresh input (it cites "often < 10%").
SWEEP_RATIOS = (0.125, 0.25, 0.5)
SWEEP_DISCOUNTS = (0.0, 0.1)
# A node counts as moved when STAR's agent is dearer for it than the cheapest by more than this.
_MOVE_RTOL = 1e-9


def trap_moves(name: str, market: WorkflowMarket, costs: NDArray[np.float64],
               assignment: NDArray[np.int64]) -> list[dict[str, Any]]:
    """Nodes STAR gives to a dearer agent than the cheapest capable one, and what each move buys.

    For every such node, the node alone is handed back to its cheapest agent: the true cost
    that adds is the move's net saving; ``extra_generation`` is what the dearer agent costs on
    the node by itself, and ``transfer_tokens_avoided`` the context no longer re-read.
    """
    price = market.node_cost(costs)
    cheapest = np.argmin(price, axis=1)
    base_cost = float(np.dot(costs, market.work(assignment)))
    base_fresh = market.fresh_transfer_tokens(assignment)
    moves = []
    for v, node in enumerate(market.workflow.nodes):
        a, j = int(assignment[v]), int(cheapest[v])
        if price[v, a] <= price[v, j] * (1 + _MOVE_RTOL):
            continue
        reverted = assignment.copy()
        reverted[v] = j
        moves.append({
            "scenario": name, "node": node.name, "role": node.role,
            "cheapest_tier": market.agents[j].tier, "star_tier": market.agents[a].tier,
            "extra_generation": (price[v, a] - price[v, j]) * PER_MILLION,
            "net_saving": (float(np.dot(costs, market.work(reverted))) - base_cost) * PER_MILLION,
            "transfer_tokens_avoided": market.fresh_transfer_tokens(reverted) - base_fresh,
        })
    return moves


def _star_mechanism(market: WorkflowMarket, vcs: list[VirtualCost], engine: AllocationSolver
                    ) -> ProcurementMechanism:
    """STAR on fixed market and priors as a function of the bids, for the DSIC sweep."""
    def mechanism(bids: NDArray[np.float64], payee: int | None) -> ProcurementOutcome:
        return run_star(market, bids, vcs, solver=engine, payees=None if payee is None else [payee])
    return mechanism


def _trap_summary(moves: list[dict[str, Any]], role_counts: dict[tuple[str, str], int],
                  trials: int) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for m in moves:
        groups[(m["scenario"], m["role"])].append(m)
    rows = []
    for (name, role), items in groups.items():
        rows.append({
            "scenario": name, "role": role,
            "moved_share": len(items) / (trials * role_counts[(name, role)]),
            "from_tier": float(np.mean([m["cheapest_tier"] for m in items])),
            "to_tier": float(np.mean([m["star_tier"] for m in items])),
            "extra_generation_usd": float(np.mean([m["extra_generation"] for m in items])),
            "transfer_tokens_avoided": float(np.mean([m["transfer_tokens_avoided"] for m in items])),
            "net_saving_usd": float(np.mean([m["net_saving"] for m in items])),
            "net_saving_per_trial_usd": float(np.sum([m["net_saving"] for m in items]) / trials),
        })
    return sorted(rows, key=lambda r: (r["scenario"], -r["net_saving_per_trial_usd"]))


def _summary_row(name: str, totals: dict[str, list[float]]) -> dict[str, Any]:
    mean = {m: float(np.mean(totals[m])) for m in MECHANISMS}
    row: dict[str, Any] = {"scenario": name, "setting": f"{name}: {SCENARIOS[name]}"}
    for m in MECHANISMS:
        row[f"{m}_mean"] = mean[m]
        row[f"{m}_std"] = float(np.std(totals[m]))
    row["vs_myopic_pct"] = 100.0 * (1.0 - mean["star"] / mean["myopic"])
    row["vs_homogeneous_pct"] = 100.0 * (1.0 - mean["star"] / mean["homogeneous"])
    for m in MECHANISMS:
        row[f"paper_{m}_mean"], row[f"paper_{m}_std"] = PAPER_PAYMENTS[name][m]
    row["paper_vs_myopic_pct"], row["paper_vs_homogeneous_pct"] = PAPER_REDUCTIONS[name]
    return row


@dataclass(frozen=True)
class Trial:
    """One trial of one scenario: its market, true costs, priors and the three outcomes."""

    market: WorkflowMarket
    draw: TrialCosts
    engine: AllocationSolver
    vcs: list[VirtualCost]
    outcomes: dict[str, ProcurementOutcome]
    star_ms: float


def draw_trial(name: str, rng: np.random.Generator, agents: list[Agent]) -> Trial:
    """Fresh token noise and costs for scenario ``name``, then STAR and both baselines on truthful bids."""
    workflow = scenario(name, rng)
    draw = draw_costs(rng)
    market = WorkflowMarket(workflow, agents)
    engine = make_solver(market)
    vcs = draw.virtual_costs()
    start = time.perf_counter()
    star = run_star(market, draw.costs, vcs, solver=engine)
    star_ms = (time.perf_counter() - start) * 1e3
    outcomes = {"star": star, "myopic": run_myopic(market, draw.costs, draw.high),
                "homogeneous": run_homogeneous(market, draw.costs, draw.high)}
    return Trial(market, draw, engine, vcs, outcomes, star_ms)


def run(trials: int = 50, seed: int = 0, input_ratio: float = DEFAULT_INPUT_RATIO, dsic_trials: int = 3,
        out: Path = Path("results/star"), on_trial: Callable[[], None] | None = None, *,
        cached_discount: float = 0.0, sweep: bool = True) -> dict[str, Any]:
    """Run every scenario, write CSV/JSON/PNG/markdown under ``out`` and return the report.

    With ``sweep``, Table 1 is also re-run (same seed and trials, no DSIC) at every point of
    :data:`SWEEP_RATIOS` x :data:`SWEEP_DISCOUNTS`, the choices the paper leaves open, so the
    claims table can say how close any of them comes to each cell.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if not 0 <= dsic_trials <= trials:
        raise ValueError(f"dsic_trials must be between 0 and trials ({trials}), got {dsic_trials}")
    agents = market_agents(input_ratio, cached_discount)
    trial_rows: list[dict[str, Any]] = []
    moves: list[dict[str, Any]] = []
    dsic_rows: list[dict[str, Any]] = []
    role_counts: dict[tuple[str, str], int] = {}
    worst_ir = {m: 0.0 for m in MECHANISMS}
    summary = []
    for k, name in enumerate(SCENARIOS):
        rng = np.random.default_rng([seed, k])
        totals: dict[str, list[float]] = {m: [] for m in MECHANISMS}
        for t in range(trials):
            trial = draw_trial(name, rng, agents)
            row: dict[str, Any] = {"scenario": name, "trial": t, "hour": trial.draw.hour,
                                   "solver": trial.outcomes["star"].solver, "star_ms": trial.star_ms}
            for m, outcome in trial.outcomes.items():
                totals[m].append(outcome.total_payment * PER_MILLION)
                row[f"{m}_payment"] = outcome.total_payment * PER_MILLION
                row[f"{m}_true_cost"] = outcome.true_cost(trial.draw.costs) * PER_MILLION
                worst_ir[m] = max(worst_ir[m],
                                  check_procurement_ir(outcome, trial.draw.costs).worst * PER_MILLION)
            trial_rows.append(row)
            moves += trap_moves(name, trial.market, trial.draw.costs, trial.outcomes["star"].assignment)
            if t < dsic_trials:
                mechanism = _star_mechanism(trial.market, trial.vcs, trial.engine)
                report = check_procurement_dsic(mechanism, trial.draw.costs)
                dsic_rows.append({"scenario": name, "trial": t, "misreports": report.tried,
                                  "max_gain_usd": report.max_gain * PER_MILLION,
                                  "agent": agents[report.buyer].name if report.buyer >= 0 else "",
                                  "misreport": report.misreport,
                                  "star_payment_usd": trial.outcomes["star"].total_payment * PER_MILLION})
            if on_trial is not None:
                on_trial()
        for node in trial.market.workflow.nodes:
            role_counts[(name, node.role)] = role_counts.get((name, node.role), 0) + 1
        summary.append(_summary_row(name, totals))
    trap = _trap_summary(moves, role_counts, trials)
    report = {
        "experiment": "star",
        "seed": seed,
        "trials": trials,
        "input_ratio": input_ratio,
        "cached_discount": cached_discount,
        "summary": summary,
        "broadcaster_trap": trap,
        "dsic": {"trials_checked": len(dsic_rows), "misreports": sum(r["misreports"] for r in dsic_rows),
                 "max_gain_usd": max((r["max_gain_usd"] for r in dsic_rows), default=0.0),
                 "rows": dsic_rows},
        "individual_rationality_worst_shortfall_usd": worst_ir,
        "sweep": sweep_table1(trials, seed, on_trial) if sweep else [],
        "out": str(out),
    }
    _write(out, report, trial_rows)
    return report


def sweep_table1(trials: int, seed: int, on_trial: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Table 1's summary rows at every (rho, kappa) of the sweep, each tagged with its point."""
    rows = []
    for rho in SWEEP_RATIOS:
        for kappa in SWEEP_DISCOUNTS:
            agents = market_agents(rho, kappa)
            for k, name in enumerate(SCENARIOS):
                rng = np.random.default_rng([seed, k])
                totals: dict[str, list[float]] = {m: [] for m in MECHANISMS}
                for _ in range(trials):
                    for m, outcome in draw_trial(name, rng, agents).outcomes.items():
                        totals[m].append(outcome.total_payment * PER_MILLION)
                    if on_trial is not None:
                        on_trial()
                rows.append({"input_ratio": rho, "cached_discount": kappa, **_summary_row(name, totals)})
    return rows


def _write(out: Path, report: dict[str, Any], trial_rows: list[dict[str, Any]]) -> None:
    write_csv(out / "trials.csv", trial_rows)
    write_csv(out / "summary.csv", report["summary"])
    write_csv(out / "broadcaster_trap.csv", report["broadcaster_trap"])
    write_csv(out / "dsic.csv", report["dsic"]["rows"])
    write_json(out / "summary.json", report)
    write_csv(out / "sweep.csv", report["sweep"])


