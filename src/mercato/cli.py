"""The `mercato` command: one typer app with a sub-app per area (bench, experiment, ...)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mercato import __version__
from mercato.engine.commands import bench_engine, engine_profiles, engine_serve
from mercato.engine.real import real_app
from mercato.experiments.economy_commands import bench_economy, experiment_economy
from mercato.gateway.live_commands import bench_gateway, ledger_app, serve_command
from mercato.reporting import print_table, progress, stderr
from mercato.star.commands import bench_star, experiment_star, star_app
from mercato.workloads.commands import loadgen

app = typer.Typer(
    name="mercato",
    help="Truthful, KV-cache-aware routing of LLM work among self-interested agents.",
    no_args_is_help=True,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks: mercato against a baseline measured in the same run.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")
experiment_app = typer.Typer(help="Experiments: re-run a paper's result, write CSV/JSON/PNG/markdown.",
                             no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")

# STAR workflow procurement (commands in mercato.star.commands)
app.add_typer(star_app, name="star")
experiment_app.command("star")(experiment_star)
bench_app.command("star")(bench_star)

# service economy, paper 003 (commands in mercato.experiments.economy_commands)
experiment_app.command("economy")(experiment_economy)
bench_app.command("economy")(bench_economy)

# live gateway: HTTP proxy, ledger, overhead benchmark (commands in mercato.gateway.live_commands)
app.command("serve")(serve_command)
app.add_typer(ledger_app, name="ledger")
bench_app.command("gateway")(bench_gateway)

# simulated inference engine (commands in mercato.engine.commands); other engine commands join engine_app
engine_app = typer.Typer(help="The simulated vLLM-like inference engine.", no_args_is_help=True)
app.add_typer(engine_app, name="engine")
engine_app.command("serve")(engine_serve)
engine_app.command("profiles")(engine_profiles)
engine_app.add_typer(real_app, name="real")  # llama.cpp + SmolLM2 (commands in mercato.engine.real)
bench_app.command("engine")(bench_engine)

# workloads: the load generator (command in mercato.workloads.commands)
app.command("loadgen")(loadgen)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
SeedOption = Annotated[int, typer.Option(help="Seed for the generated instances.")]


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context,
         version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False) -> None:
    """mercato: auctions with truthful prices, cache-aware routing, reproducible evidence."""
    if version:
        typer.echo(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


@bench_app.command("mechanisms")
def bench_mechanisms(json_out: JsonFlag = False, seed: SeedOption = 0) -> None:
    """Time exact allocation + all VCG payments against N+1 re-solves and the paper's design."""
    from mercato.bench import mechanisms

    with progress() as bar:
        task = bar.add_task("bench mechanisms", total=len(mechanisms.SIZES))
        report = mechanisms.run(seed=seed, on_size=lambda _: bar.advance(task))
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    rows = [
        {
            "size": label,
            "alloc ms": r["ms_allocation"],
            "payments ms": r["ms_payments"],
            "alloc+pay ms": r["ms_allocation_and_payments"],
            "naive N+1 ms": r["ms_naive_total_same_solver"],
            "x naive (payments)": r["speedup_vs_naive_same_solver"],
            "x naive (total)": r["speedup_total_vs_naive_same_solver"],
            "paper design ms": r["ms_paper_design"],
            "x paper": r["speedup_vs_paper_design"],
        }
        for label, r in report["sizes"].items()
    ]
    print_table("VCG auction: exact b-matching + all payments (median ms)", rows)
    for label, r in report["sizes"].items():
        if r["paper_design_method"] != "measured" or r["naive_same_solver_method"] != "measured":
            stderr.print(f"  {label}: paper design {r['paper_design_method']}; "
                         f"naive {r['naive_same_solver_method']}")
    met = report["targets_met"]
    line = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in met.items())
    typer.echo(f"targets: {line}")


@bench_app.command("auction")
def bench_auction(json_out: JsonFlag = False, seed: SeedOption = 0,
                  requests: Annotated[int, typer.Option(help="Requests in the batch.")] = 200,
                  backends: Annotated[int, typer.Option(help="Backends in the hub.")] = 100) -> None:
    """Time one Router round (features, predictions, auction, payments) against river's per-pair scoring."""
    from mercato.bench import auction

    with progress() as bar:
        task = bar.add_task("bench auction", total=1)
        report = auction.run(n_requests=requests, n_backends=backends, seed=seed)
        bar.advance(task)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    print_table(f"one Router round at {requests} requests x {backends} backends (median ms)", [{
        "round": report["ms_round_median"],
        "predict all pairs": report["ms_predict_all_pairs"],
        "auction + payments": report["ms_auction_and_payments"],
        "river per-pair scoring": report["ms_river_per_pair_scoring_baseline"],
        "x vs river scoring": report["speedup_scoring_vs_river"],
    }])
    typer.echo(f"target: round <= {report['target_ms']:g} ms: {'yes' if report['target_met'] else 'NO'}")


@app.command("demo")
def demo(
    dialogues: Annotated[int, typer.Option(help="CoQA-like dialogues per policy.")] = 24,
    turns: Annotated[int, typer.Option(help="Turns per dialogue.")] = 6,
    concurrency: Annotated[int, typer.Option(help="Dialogues in flight at once.")] = 12,
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second of the engines.")] = 1.0,
    policies: Annotated[str, typer.Option(help="Comma-separated policies to compare.")] = (
        "auction,random,round_robin,least_loaded,cache_aware,mf"),
    out: Annotated[str, typer.Option(help="Folder for CSV/JSON/PNG/markdown.")] = "results/demo",
    seed: SeedOption = 0,
) -> None:
    """The main job: gateway + heterogeneous engine fleet + multi-turn workload, once per policy."""
    from pathlib import Path

    from mercato.gateway.demo import COLUMNS, DemoSettings, run_policy, write_outputs

    chosen = tuple(p.strip() for p in policies.split(",") if p.strip())
    try:
        settings = DemoSettings(dialogues=dialogues, turns=turns, concurrency=concurrency, speed=speed,
                                seed=seed, policies=chosen, out=Path(out))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    rows, records = [], {}
    with progress() as bar:
        total = settings.dialogues * settings.turns
        for policy in settings.policies:
            task = bar.add_task(f"demo {policy}", total=total)
            row, recs = run_policy(policy, settings, on_record=lambda _r, t=task: bar.advance(t))
            bar.update(task, completed=total)
            rows.append(row)
            records[policy] = recs
    paths = write_outputs(rows, records, settings)
    shown = [c for c in COLUMNS if c not in {"ledger_records", "errors"}]
    print_table("mercato demo: policies compared on one workload (fresh fleet each)", rows, shown)
    stderr.print("wrote " + ", ".join(str(p) for p in paths))
