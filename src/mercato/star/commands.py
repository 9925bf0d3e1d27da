"""Command-line front ends of STAR: `mercato star plan`, `mercato experiment star`, `mercato bench star`.

They live here rather than in ``mercato.cli`` so that the shared CLI module only registers
them; heavy imports happen inside the commands to keep `mercato --help` fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mercato.reporting import print_table, progress

star_app = typer.Typer(help="STAR: truthful, topology-aware procurement of agentic workflows.",
                       no_args_is_help=True)

_Json = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
_Seed = Annotated[int, typer.Option(help="Seed for token noise and market costs.")]


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


@star_app.command("plan")
def plan_command(
    workflow: Annotated[Path, typer.Argument(help="Workflow YAML (nodes, edges).")],
    agents: Annotated[Path, typer.Option("--agents", help="Agents YAML (tier, bid, prior, ...).")],
    solver: Annotated[str, typer.Option(help="auto, tree, junction_tree or milp.")] = "auto",
    payments: Annotated[str, typer.Option(help="crossing (exact) or bisection (paper's Alg. 1).")
                        ] = "crossing",
    json_out: _Json = False,
) -> None:
    """Allocate WORKFLOW among the agents, with each winner's payment, cost and utility."""
    from mercato.star.config import load_bidders, load_workflow
    from mercato.star.plan import plan

    try:
        report = plan(load_workflow(workflow), load_bidders(agents), solver, payments)
    except ValueError as exc:
        raise _fail(exc) from None
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    print_table("Allocation", report["nodes"], ["node", "role", "difficulty", "agent", "tier"])
    print_table("Agents ($; bids per 1M output tokens)", report["agents"],
                ["agent", "tier", "bid", "virtual_cost", "nodes", "work_tokens", "payment", "cost",
                 "utility"])
    typer.echo(f"solver: {report['solver']} ({report['solve_ms']:.2f} ms); payments: "
               f"{report['payment_method']} ({report['payment_ms']:.2f} ms)")
    base = report["baselines"]
    typer.echo(f"total payment: STAR ${report['total_payment']:.4f} (true cost ${report['true_cost']:.4f}); "
               f"myopic ${base['myopic']['total_payment']:.4f}; "
               f"homogeneous ${base['homogeneous']['total_payment']:.4f}")


def experiment_star(
    trials: Annotated[int, typer.Option(help="Trials per scenario (paper: 50).")] = 50,
    seed: _Seed = 0,
    # default = mercato.star.market.DEFAULT_INPUT_RATIO (not imported here: keeps `mercato --help` fast)
    input_ratio: Annotated[float, typer.Option(help="Input/output price ratio rho of every agent.")] = 0.25,
    dsic_trials: Annotated[int, typer.Option(help="Trials per scenario swept for DSIC.")] = 3,
    out: Annotated[Path, typer.Option(help="Folder for CSV, JSON, PNG and markdown.")] = Path("results/star"),
    json_out: _Json = False,
) -> None:
    """Paper Table 1: STAR vs myopic vs homogeneous on S1-S4, trap breakdown, DSIC and IR checks."""
    from mercato.experiments import star
    from mercato.star.scenarios import SCENARIOS

    try:
        with progress() as bar:
            task = bar.add_task("experiment star", total=trials * len(SCENARIOS))
            report = star.run(trials=trials, seed=seed, input_ratio=input_ratio, dsic_trials=dsic_trials,
                              out=out, on_trial=lambda: bar.advance(task))
    except ValueError as exc:
        raise _fail(exc) from None
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    rows: list[dict[str, Any]] = [
        {"setting": r["setting"], "STAR": f"{r['star_mean']:.2f} ± {r['star_std']:.2f}",
         "Myopic": f"{r['myopic_mean']:.2f} ± {r['myopic_std']:.2f}",
         "Homog.": f"{r['homogeneous_mean']:.2f} ± {r['homogeneous_std']:.2f}",
         "vs Myopic": f"{r['vs_myopic_pct']:.1f}%", "vs Homog.": f"{r['vs_homogeneous_pct']:.1f}%",
         "paper S/M/H": f"{r['paper_star_mean']:.2f}/{r['paper_myopic_mean']:.2f}/"
                        f"{r['paper_homogeneous_mean']:.2f}",
         "paper vs M/H": f"{r['paper_vs_myopic_pct']:.1f}%/{r['paper_vs_homogeneous_pct']:.1f}%"}
        for r in report["summary"]]
    print_table(f"Average total payment ($, mean ± std over {trials} trials), ours vs paper Table 1", rows)
    trap = [{"scenario": r["scenario"], "role": r["role"], "moved": f"{100 * r['moved_share']:.0f}%",
             "tier": f"{r['from_tier']:.1f} -> {r['to_tier']:.1f}",
             "transfer tokens avoided": r["transfer_tokens_avoided"],
             "net saving/move $": r["net_saving_usd"]}
            for r in report["broadcaster_trap"] if r["moved_share"] >= 0.15]
    print_table("Broadcaster trap: nodes STAR moves to a dearer agent (in >= 15% of cases)", trap)
    dsic = report["dsic"]
    ir = report["individual_rationality_worst_shortfall_usd"]
    typer.echo(f"DSIC: {dsic['misreports']} misreports on {dsic['trials_checked']} trials, "
               f"max gain ${dsic['max_gain_usd']:.3g}; IR worst shortfall: "
               + ", ".join(f"{m} ${v:.3g}" for m, v in ir.items()))
    typer.echo(f"wrote {report['out']}/summary.md, CSV, JSON and PNG plots")


def bench_star(json_out: _Json = False, seed: _Seed = 0) -> None:
    """Time exact allocation per scenario and solver, and all winners' critical-value payments."""
    from mercato.bench import star
    from mercato.star.scenarios import SCENARIOS

    with progress() as bar:
        task = bar.add_task("bench star", total=len(SCENARIOS))
        report = star.run(seed=seed, on_scenario=lambda _: bar.advance(task))
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    rows = []
    for r in report["scenarios"].values():
        for method, t in r["solvers"].items():
            rows.append({"scenario": r["scenario"], "nodes": r["nodes"], "treewidth": r["treewidth"],
                         "solver": method + (" (auto)" if method == r["auto_solver"] else ""),
                         "alloc ms": t["alloc_ms"], "re-solve ms": t["resolve_ms"]})
    print_table("Exact allocation (median ms; alloc = set-up + solve)", rows)
    pay = [{"scenario": r["scenario"], "winners": r["winners"], "payments ms": r["payments_ms"],
            "bisection (paper) ms": r["payments_ms_bisection"], "total payment $": r["total_payment_usd"],
            "bisection - crossing $": r["bisection_minus_crossing_usd"]}
           for r in report["scenarios"].values()]
    print_table("All winners' critical-value payments (median ms)", pay)
    met = report["targets_met"]
    typer.echo("targets: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in met.items()))
