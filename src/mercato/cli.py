"""The `mercato` command: one typer app with a sub-app per area (bench, experiment, ...)."""

from __future__ import annotations

from typing import Annotated

import typer

from mercato import __version__
from mercato.bench.commands import bench_auction, bench_engine, bench_mechanisms
from mercato.engine.commands import engine_profiles, engine_serve
from mercato.engine.real import real_app
from mercato.experiments.economy_commands import bench_economy, experiment_economy
from mercato.experiments.iemas.commands import experiment_iemas
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

# IEMAS evaluation, paper 004 (command in mercato.experiments.iemas.commands)
experiment_app.command("iemas")(experiment_iemas)

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
bench_app.command("mechanisms")(bench_mechanisms)
bench_app.command("auction")(bench_auction)

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



@app.command("demo")
def demo(
    dialogues: Annotated[int, typer.Option(help="CoQA-like dialogues per policy.")] = 24,
    turns: Annotated[int, typer.Option(help="Turns per dialogue.")] = 6,
    concurrency: Annotated[int, typer.Option(help="Dialogues in flight at once.")] = 12,
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second of the engines.")] = 1.0,
    capacity: Annotated[int, typer.Option(help="Gateway slots per backend (the auction's q_i).")] = 12,
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
                                capacity=capacity, seed=seed, policies=chosen, out=Path(out))
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
