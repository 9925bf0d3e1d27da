"""The `mercato` command: one typer app with a sub-app per area (bench, experiment, ...)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mercato import __version__
from mercato.reporting import print_table, progress, stderr

app = typer.Typer(
    name="mercato",
    help="Truthful, KV-cache-aware routing of LLM work among self-interested agents.",
    no_args_is_help=True,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks: mercato against a baseline measured in the same run.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")

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
