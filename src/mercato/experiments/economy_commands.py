"""Command-line front ends of the economy: `mercato experiment economy` and `mercato bench economy`.

Registered by :mod:`mercato.cli`; heavy imports happen inside the commands so that
`mercato --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mercato.reporting import print_table, progress

_Json = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
_Seed = Annotated[int, typer.Option(help="First seed; runs use seed .. seed + seeds - 1.")]
_Workers = Annotated[int, typer.Option(help="Worker processes for the runs.")]


def experiment_economy(
    which: Annotated[str, typer.Argument(help="Experiment 1-7, or all.")],
    seed: _Seed = 0,
    seeds: Annotated[int, typer.Option(help="Seeds per condition (paper: 10).")] = 10,
    rounds: Annotated[int, typer.Option(help="Rounds per run (paper: 200).")] = 200,
    workers: _Workers = 2,
    out: Annotated[Path, typer.Option(help="Folder for CSV, JSON, PNG and markdown.")] = Path(
        "results/economy"),
    json_out: _Json = False,
) -> None:
    """Re-run paper 003's service-economy experiments with the paper's values beside ours."""
    from mercato.experiments.economy import EXPERIMENTS, run_all, run_experiment
    from mercato.experiments.economy_report import Options, Report, print_report

    if which != "all" and which not in EXPERIMENTS:
        raise typer.BadParameter(f"choose one of {', '.join(EXPERIMENTS)} or all", param_hint="WHICH")
    try:
        options = Options(seed=seed, seeds=seeds, rounds=rounds, workers=workers, out=out)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None

    def show(report: Report) -> None:
        if not json_out:
            print_report(report)
            typer.echo(f"experiment {report.experiment}: {len(report.runs)} runs in "
                       f"{report.seconds:.1f} s; files: {', '.join(report.files)}")

    try:
        if which == "all":
            result: dict[str, Any] = run_all(options, on_report=show)
            if not json_out:
                typer.echo(f"all: {result['runs']} runs in {result['seconds']} s; index {result['index']}")
        else:
            report = run_experiment(which, options)
            show(report)
            result = report.to_json()
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_out:
        typer.echo(json.dumps(result, indent=2, default=float))


def bench_economy(json_out: _Json = False, seed: _Seed = 0, workers: _Workers = 2) -> None:
    """Time one 200-round run (N=50, medium, entangled) and Experiment 1 (120 runs)."""
    from mercato.bench import economy

    if workers < 1:
        raise typer.BadParameter(f"workers must be >= 1, got {workers}")
    with progress() as bar:
        task = bar.add_task("bench economy", total=2)
        report = economy.run(seed=seed, workers=workers, show_progress=False,
                             on_step=lambda _: bar.advance(task))
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    print_table("Service economy: wall time (CPU time of one run beside it)", [
        {"name": "one run (200 rounds)", "mercato s": report["one_run_s"],
         "CPU s": report["one_run_cpu_s"], "reference s": "36-50", "speedup": report["speedup_one_run"]},
        {"name": "Experiment 1 (120 runs)", "mercato s": report["experiment1_s"], "CPU s": "-",
         "reference s": report["reference_experiment1_s"], "speedup": report["speedup_experiment1"]},
    ])
    met = report["targets_met"]
    typer.echo("targets: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in met.items()))
