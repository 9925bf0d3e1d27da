"""`mercato experiment star | economy | iemas`: re-run a paper's result beside the paper's values.

The experiments live in :mod:`mercato.experiments` and are imported inside the commands so that
`mercato --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mercato.cli.options import FirstSeedOption, JsonFlag, StarSeedOption, WorkersOption, usage_error
from mercato.reporting import print_table, progress, stderr

if TYPE_CHECKING:
    from mercato.experiments.economy_report import Report
    from mercato.experiments.iemas.common import Section

experiment_app = typer.Typer(help="Experiments: re-run a paper's result, write CSV/JSON/PNG/markdown.",
                             no_args_is_help=True)

# the IEMAS experiments of mercato.experiments.iemas.report (not imported here: keeps `mercato --help` fast)
IEMAS_NAMES = ("table1", "predictors", "truthfulness", "welfare", "clustering", "schemes", "live", "all")


@experiment_app.command("star")
def experiment_star(
    trials: Annotated[int, typer.Option(help="Trials per scenario (paper: 50).")] = 50,
    seed: StarSeedOption = 0,
    # default = mercato.star.market.DEFAULT_INPUT_RATIO (not imported here: keeps `mercato --help` fast)
    input_ratio: Annotated[float, typer.Option(help="Input/output price ratio rho of every agent.")] = 0.25,
    dsic_trials: Annotated[int, typer.Option(help="Trials per scenario swept for DSIC.")] = 3,
    cached_discount: Annotated[float, typer.Option(
        help="Price of a cached input token as a share of a fresh one (kappa).")] = 0.0,
    sweep: Annotated[bool, typer.Option(
        help="Also re-run Table 1 over the paper's free choices (rho x kappa) for the claims table.")] = True,
    out: Annotated[Path, typer.Option(help="Folder for CSV, JSON, PNG and markdown.")] = Path("results/star"),
    json_out: JsonFlag = False,
) -> None:
    """Paper Table 1: STAR vs myopic vs homogeneous on S1-S4, trap breakdown, DSIC and IR checks."""
    from mercato.experiments import star, star_report
    from mercato.experiments.claims import tally_line
    from mercato.star.scenarios import SCENARIOS

    points = 1 + (len(star.SWEEP_RATIOS) * len(star.SWEEP_DISCOUNTS) if sweep else 0)
    try:
        with progress() as bar:
            task = bar.add_task("experiment star", total=trials * len(SCENARIOS) * points)
            report = star.run(trials=trials, seed=seed, input_ratio=input_ratio, dsic_trials=dsic_trials,
                              out=out, on_trial=lambda: bar.advance(task), cached_discount=cached_discount,
                              sweep=sweep)
            claims = star_report.write(report)
    except ValueError as exc:
        raise usage_error(exc) from None
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
    typer.echo(f"claims against the paper: {tally_line(claims)}")
    typer.echo(f"wrote {report['out']}/summary.md, CSV, JSON and PNG plots")


@experiment_app.command("economy")
def experiment_economy(
    which: Annotated[str, typer.Argument(help="Experiment 1-7, or all.")],
    seed: FirstSeedOption = 0,
    seeds: Annotated[int, typer.Option(help="Seeds per condition (paper: 10).")] = 10,
    rounds: Annotated[int, typer.Option(help="Rounds per run (paper: 200).")] = 200,
    workers: WorkersOption = 2,
    out: Annotated[Path, typer.Option(help="Folder for CSV, JSON, PNG and markdown.")] = Path(
        "results/economy"),
    variant: Annotated[bool, typer.Option(
        help="Also run Experiments 1-6 under welfare-aware admission where it changes anything.")] = True,
    json_out: JsonFlag = False,
) -> None:
    """Re-run paper 003's service-economy experiments with the paper's values beside ours."""
    from mercato.experiments.economy import EXPERIMENTS, run_all, run_experiment
    from mercato.experiments.economy_report import Options, print_report

    if which != "all" and which not in EXPERIMENTS:
        raise typer.BadParameter(f"choose one of {', '.join(EXPERIMENTS)} or all", param_hint="WHICH")
    try:
        options = Options(seed=seed, seeds=seeds, rounds=rounds, workers=workers, out=out, variant=variant)
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
        raise usage_error(exc) from None
    if json_out:
        typer.echo(json.dumps(result, indent=2, default=float))


@experiment_app.command("iemas")
def experiment_iemas(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(IEMAS_NAMES)}.")],
    seed: FirstSeedOption = 0,
    seeds: Annotated[int, typer.Option(help="Seeds per condition (intervals need at least 5).")] = 5,
    workers: Annotated[int, typer.Option(help="Worker processes for independent runs.")] = 2,
    out: Annotated[Path, typer.Option(help="Folder for CSV, JSON, PNG and markdown.")] = Path(
        "results/iemas"),
    quick: Annotated[bool, typer.Option("--quick", help="Reduced sizes: a smoke run, not the experiment.")
                     ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Re-run the IEMAS evaluation (Table 1, Figs 3-7, live check) with the paper's values beside ours."""
    from mercato.experiments.iemas.common import Options
    from mercato.experiments.iemas.live import EngineUnavailable
    from mercato.experiments.iemas.report import result_json, run_all, run_experiment

    if name not in IEMAS_NAMES:
        raise typer.BadParameter(f"choose one of {', '.join(IEMAS_NAMES)}", param_hint="NAME")
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
