"""The `mercato` command: one typer app with a sub-app per area, one module per command group.

Every typer command of the project lives in this package; the areas (mechanisms, engine, gateway,
bench, experiments, ...) do not import typer. Each command imports its area inside its body so
that `mercato --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mercato import __version__
from mercato.cli.bench import bench_app
from mercato.cli.demo import demo
from mercato.cli.engine import engine_app
from mercato.cli.experiment import experiment_app
from mercato.cli.fleet import fleet_app
from mercato.cli.gateway import gateway_serve, ledger_app
from mercato.cli.loadgen import loadgen
from mercato.cli.star import star_app

app = typer.Typer(
    name="mercato",
    help="Truthful, KV-cache-aware routing of LLM work among self-interested agents.",
    no_args_is_help=True,
    add_completion=False,
)


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


# commands (listed first by `mercato --help`), then the groups, in this order
app.command("serve")(gateway_serve)  # live gateway (mercato.cli.gateway)
app.command("loadgen")(loadgen)  # workloads (mercato.cli.loadgen)
app.command("demo")(demo)  # gateway + engine fleet + workload (mercato.cli.demo)
app.add_typer(bench_app, name="bench")  # mechanisms, auction, engine, gateway, star, economy
app.add_typer(experiment_app, name="experiment")  # star, economy, iemas
app.add_typer(star_app, name="star")  # STAR workflow procurement
app.add_typer(ledger_app, name="ledger")  # the gateway's accounting ledger (mercato.cli.gateway)
app.add_typer(engine_app, name="engine")  # simulated engine + `engine real` (llama.cpp)
app.add_typer(fleet_app, name="fleet")  # simulated engines in the background (mercato.cli.fleet)

__all__ = ["app"]
