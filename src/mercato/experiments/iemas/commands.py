"""`mercato experiment iemas <name>`: re-run one IEMAS experiment, or all of them with REPORT.md.

Registered by :mod:`mercato.cli`; the experiments are imported inside the command so that
`mercato --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mercato.reporting import print_table, stderr

if TYPE_CHECKING:
    from mercato.experiments.iemas.common import Section

NAMES = ("table1", "predictors", "truthfulness", "welfare", "clustering", "schemes", "live", "all")


def experiment_iemas(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(NAMES)}.")],
    seed: Annotated[int, typer.Option(help="First seed; runs use seed .. seed + seeds - 1.")] = 0,
    seeds: Annotated[int, typer.Option(help="Seeds per condition (intervals need at least 5).")] = 5,
    workers: Annotated[int, typer.Option(help="Worker processes for independent runs.")] = 2,
    out: Annotated[Path, typer.Option(help="Folder for CSV, JSON, PNG and markdown.")] = Path(
        "results/iemas"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="Reduced sizes: a smoke run, not the experiment.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
) -> None:
    """Re-run the IEMAS evaluation (Table 1, Figs 3-7, live check) with the paper's values beside ours."""
    from mercato.experiments.iemas.common import Options
    from mercato.experiments.iemas.live import EngineUnavailable
    from mercato.experiments.iemas.report import result_json, run_all, run_experiment

    if name not in NAMES:
        raise typer.BadParameter(f"choose one of {', '.join(NAMES)}", param_hint="NAME")
    try:
        options = Options(seed=seed, seeds=seeds, workers=workers, out=out, quick=quick)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None

    def show(section: Section) -> None:
        if json_out:
            return
        for title, rows, columns in section.tables:
            print_table(title, rows, columns)
        state = "" if section.ok else " (skipped)"
        typer.echo(f"{section.name}{state}: {section.seconds:.1f} s; files: {', '.join(section.files)}")

    try:
        if name == "all":
            sections = run_all(options, on_section=show)
            if not json_out:
                typer.echo(f"report: {out / 'REPORT.md'}")
        else:
            sections = [run_experiment(name, options)]
            show(sections[0])
    except EngineUnavailable as err:
        stderr.print(f"live check cannot run: {err}")
        raise typer.Exit(1) from None
    if json_out:
        typer.echo(json.dumps(result_json(sections), indent=2, default=float))
