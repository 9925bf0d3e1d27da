"""Shared machinery of the economy experiments: run a factor grid over seeds, summarise, report.

An experiment is a list of :class:`Condition` (factor labels + an :class:`EconomyConfig`), run
once per seed by :func:`run_conditions` (parallel, progress bar). :func:`summarize` turns the run
rows into one row per condition: the mean of each metric with its BCa 95% interval and, where
the paper reports the cell, the paper's value. :class:`Report` collects summary, statistical
tests and notes; :func:`admission_variant` re-runs the conditions where the admission rule
matters under mercato's ``welfare_aware`` variant (the paper's rule is the default), so each
table shows both. :func:`write_report` writes ``exp<N>_runs.csv``, ``exp<N>_summary.csv``,
``exp<N>_variant_summary.csv``, ``exp<N>_tests.csv``, ``exp<N>.json``, ``exp<N>.md`` (opening
with the experiment's claims, :mod:`mercato.experiments.economy_claims`) and the experiment's PNG
under the output folder, and :func:`print_report` prints the tables. Experiment 7 (``economy_exp7``) can reuse
all of it: its ``run(options: Options) -> Report`` is what the ``all`` driver calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mercato.economy.config import EconomyConfig
from mercato.economy.mechanisms import STOPPING_RULES
from mercato.economy.runner import run_many
from mercato.economy.stats import bca_interval
from mercato.experiments import economy_claims
from mercato.experiments.claims import Claim, claims_table, tally_line
from mercato.reporting import fmt, markdown_table, print_table, stderr, write_csv, write_json

LABELS: dict[str, str] = {
    "median_latency": "median latency (ms)", "p95_latency": "p95 latency (ms)",
    "drop_rate": "drop rate", "coverage": "coverage", "deadline_satisfaction": "deadline sat.",
    "on_time": "on-time share", "utilisation": "utilisation", "volatility": "price volatility",
    "price_cv": "price CV", "welfare": "welfare", "efficiency": "efficiency ratio",
    "revenue": "revenue", "utility_truthful": "utility (truthful)",
    "utility_strategic": "utility (strategic)", "mean_trust": "mean trust",
    "realised_utilisation": "realised utilisation", "governance_rejections": "gov. rejections",
}
PAIRWISE = "rank-sum (Holm)"
# Metrics shown for both admission rules side by side.
VARIANT_METRICS = ("median_latency", "drop_rate", "welfare", "volatility")
SHORT: dict[str, str] = {
    "median_latency": "lat", "p95_latency": "p95", "drop_rate": "drop", "coverage": "cov",
    "deadline_satisfaction": "sat", "on_time": "on-time", "utilisation": "util",
    "volatility": "vol", "price_cv": "cv", "welfare": "W", "efficiency": "eff",
}


@dataclass(frozen=True)
class Options:
    """How to run an experiment: seeds ``seed .. seed + seeds - 1``, rounds, processes, output,
    and whether to re-run it under the ``welfare_aware`` admission variant as well."""

    seed: int = 0
    seeds: int = 10
    rounds: int = 200
    workers: int = 2
    out: Path = Path("results/economy")
    show_progress: bool = True
    variant: bool = False

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.rounds < 2:
            raise ValueError(f"rounds must be >= 2, got {self.rounds}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class Condition:
    """One cell of a factor grid: its labels (factor -> level, in display order) and config."""

    labels: Mapping[str, Hashable]
    config: EconomyConfig

    @property
    def key(self) -> tuple[Hashable, ...]:
        """The labels' values, in order (the key of the paper tables)."""
        return tuple(self.labels.values())


@dataclass
class Report:
    """Everything one experiment produced."""

    experiment: str
    title: str
    factors: list[str]
    metrics: list[str]
    runs: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    tests: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    paper_table: str = ""
    # The same conditions under welfare-aware admission (empty when not run), and their tests.
    variant: list[dict[str, Any]] = field(default_factory=list)
    variant_tests: list[dict[str, Any]] = field(default_factory=list)
    variant_runs: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready report (the per-run rows stay in the CSV)."""
        return {"experiment": self.experiment, "title": self.title, "runs": len(self.runs),
                "variant_runs": self.variant_runs, "seconds": round(self.seconds, 2),
                "factors": self.factors, "metrics": self.metrics, "paper_table": self.paper_table,
                "summary": self.summary, "variant": self.variant, "tests": self.tests,
                "variant_tests": self.variant_tests, "notes": self.notes, "files": self.files}

    def claims(self) -> list[Claim]:
        """The paper's claims this experiment answers, judged (none for Experiment 7)."""
        return economy_claims.claims(self.experiment, self.factors, self.summary, self.tests,
                                     self.variant, self.variant_tests)

    def variant_claims(self) -> list[Claim]:
        """The same claims judged on the welfare-aware variant's results (none when not run)."""
        if not self.variant:
            return []
        return economy_claims.claims(self.experiment, self.factors, self.variant, self.variant_tests)


def run_conditions(conditions: Sequence[Condition], options: Options, label: str
                   ) -> list[dict[str, Any]]:
    """Run every condition once per seed; one row per run: labels, seed, metrics."""
    seeds = range(options.seed, options.seed + options.seeds)
    configs = [c.config.with_(seed=s, rounds=options.rounds) for c in conditions for s in seeds]
    metrics = run_many(configs, workers=options.workers, label=label,
                       show_progress=options.show_progress)
    rows = []
    for i, m in enumerate(metrics):
        condition = conditions[i // options.seeds]
        rows.append({**condition.labels, "seed": configs[i].seed, **m})
    return rows


def admission_variant(conditions: Sequence[Condition], runs: Sequence[Mapping[str, Any]],
                      options: Options, label: str) -> tuple[list[Condition], list[dict[str, Any]], int]:
    """Runs of ``conditions`` under welfare-aware admission, and how many were new.

    Only rules in :data:`~mercato.economy.mechanisms.STOPPING_RULES` admit differently, so the
    other conditions' runs are reused from ``runs`` (same seeds, same results) instead of re-run.
    Returns the conditions (relabelled configs), all their runs, and the number of new runs.
    """
    variant = [Condition(c.labels, c.config.with_(admission="welfare_aware")) for c in conditions]
    rerun = [c for c in variant if c.config.mechanism in STOPPING_RULES]
    new = run_conditions(rerun, options, f"{label} (welfare-aware)") if rerun else []
    kept = [r for c in variant if c.config.mechanism not in STOPPING_RULES
            for r in runs if all(r[k] == v for k, v in c.labels.items())]
    return variant, new + kept, len(new)


def select(runs: Sequence[Mapping[str, Any]], metric: str, **levels: Hashable) -> np.ndarray:
    """Values of ``metric`` over the runs whose labels match ``levels`` (in run order)."""
    return np.array([r[metric] for r in runs if all(r[k] == v for k, v in levels.items())],
                    dtype=np.float64)


def summarize(runs: Sequence[Mapping[str, Any]], conditions: Sequence[Condition],
              metrics: Sequence[str], paper: Mapping[Hashable, Mapping[str, float]] | None = None,
              seed: int = 0) -> list[dict[str, Any]]:
    """One row per condition: mean, BCa interval (``_lo`` / ``_hi``) and paper value per metric."""
    rows = []
    for condition in conditions:
        row: dict[str, Any] = dict(condition.labels)
        row["n"] = len(select(runs, metrics[0], **condition.labels))
        published = (paper or {}).get(condition.key, {})
        for m in metrics:
            est = bca_interval(select(runs, m, **condition.labels), seed=seed)
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = est.mean, est.low, est.high
            if m in published:
                row[f"{m}_paper"] = published[m]
        rows.append(row)
    return rows


def print_report(report: Report, metrics: Sequence[str] | None = None) -> None:
    """Rich tables: ours beside the paper's values, then the statistical tests."""
    shown = list(metrics or report.metrics)
    columns = list(report.factors)
    for m in shown:
        columns.append(SHORT.get(m, m))
        if any(f"{m}_paper" in r for r in report.summary):
            columns.append(f"{SHORT.get(m, m)} paper")
    rows = []
    for r in report.summary:
        row = {f: r[f] for f in report.factors}
        for m in shown:
            row[SHORT.get(m, m)] = r[m]
            row[f"{SHORT.get(m, m)} paper"] = r.get(f"{m}_paper")
        rows.append(row)
    title = f"Experiment {report.experiment}: {report.title} (mean over seeds"
    title += f"; paper = {report.paper_table})" if report.paper_table else ")"
    print_table(title, rows, columns)
    overall = [t for t in report.tests if t["test"] != PAIRWISE]
    if overall:
        print_table(f"Experiment {report.experiment}: tests (pairwise rank-sum tests in the "
                    f"markdown and CSV)", overall, list(overall[0].keys()))
    for note in report.notes:
        stderr.print(f"note: {note}")


def write_report(report: Report, out: Path, plot: Callable[[Report, Path], None] | None) -> None:
    """Write CSV, JSON, markdown and the plot; record their paths in ``report.files``."""
    stem = out / f"exp{report.experiment}"
    files = [write_csv(stem.with_name(stem.name + "_runs.csv"), report.runs),
             write_csv(stem.with_name(stem.name + "_summary.csv"), report.summary,
                       _all_keys(report.summary))]
    if report.variant:
        files.append(write_csv(stem.with_name(stem.name + "_variant_summary.csv"), report.variant,
                               _all_keys(report.variant)))
    for suffix, rows in (("_tests.csv", report.tests), ("_variant_tests.csv", report.variant_tests)):
        if rows:
            files.append(write_csv(stem.with_name(stem.name + suffix), rows, _all_keys(rows)))
    if plot is not None:
        png = stem.with_suffix(".png")
        plot(report, png)
        files.append(png)
    md = stem.with_suffix(".md")
    files.append(md)
    report.files = [str(f) for f in files] + [str(stem.with_suffix(".json"))]
    md.write_text(markdown(report))
    write_json(stem.with_suffix(".json"), report.to_json())


def _all_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    return list(keys)


def markdown(report: Report) -> str:
    """The experiment's markdown section: its claims and their tally first, then what ran, the
    table with intervals, the welfare-aware variant beside the paper's rule, tests, notes."""
    lines = [f"## Experiment {report.experiment}: {report.title}", ""]
    claims = report.claims()
    if claims:
        lines += [f"{tally_line(claims)} {economy_claims.TOLERANCES_TEXT}", ""]
        if report.variant:
            lines += ["Judged on the welfare-aware variant instead: "
                      f"{tally_line(report.variant_claims())}", ""]
        lines += [claims_table(claims).rstrip("\n"), ""]
    ran = f"{len(report.runs)} runs"
    if report.variant_runs:
        ran += f" under the paper's admission rule and {report.variant_runs} under the welfare-aware variant"
    lines += [f"{ran} in {report.seconds:.1f} s. Means over seeds with BCa 95% intervals; paper values "
              f"from {report.paper_table or 'no table'}.", ""]
    header = list(report.factors)
    for m in report.metrics:
        header.append(LABELS.get(m, m))
        if any(f"{m}_paper" in r for r in report.summary):
            header.append("paper")
    rows = []
    for r in report.summary:
        cells = [str(r[f]) for f in report.factors]
        for m in report.metrics:
            cells.append(f"{fmt(r[m])} [{fmt(r[f'{m}_lo'])}, {fmt(r[f'{m}_hi'])}]")
            if any(f"{m}_paper" in s for s in report.summary):
                cells.append(fmt(r.get(f"{m}_paper", "")))
        rows.append(cells)
    lines.append(markdown_table(header, rows).rstrip("\n"))
    if report.variant:
        lines += ["", _variant_section(report)]
    if report.tests:
        keys = list(report.tests[0].keys())
        lines += ["", "Statistical tests:", "",
                  markdown_table(keys, [[fmt(t.get(k)) for k in keys] for t in report.tests]).rstrip("\n")]
    png = [f for f in report.files if f.endswith(".png")]
    if png:
        lines += ["", f"![Experiment {report.experiment}]({Path(png[0]).name})"]
    if report.notes:
        lines += [""] + [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def _variant_section(report: Report) -> str:
    """The paper's value, the paper's rule and the welfare-aware variant side by side."""
    shown = [m for m in VARIANT_METRICS if m in report.metrics]
    header = list(report.factors)
    for m in shown:
        header += [f"{SHORT[m]} paper", f"{SHORT[m]} paper rule", f"{SHORT[m]} welfare-aware"]
    rows = []
    for v in report.variant:
        r = next(r for r in report.summary if all(r[f] == v[f] for f in report.factors))
        cells = [str(r[f]) for f in report.factors]
        for m in shown:
            cells += [fmt(r.get(f"{m}_paper", "")), fmt(r[m]),
                      f"{fmt(v[m])} [{fmt(v[f'{m}_lo'])}, {fmt(v[f'{m}_hi'])}]"]
        rows.append(cells)
    return "\n".join(["### Admission rule: the paper's against mercato's welfare-aware stop", "",
                      "The same conditions and seeds with value-based rules stopping where the next "
                      "task would lower expected welfare (`admission: welfare_aware`); random and EDF "
                      "admit the same either way, so their runs are shared.", "",
                      markdown_table(header, rows).rstrip("\n")])


def timed(fn: Callable[[], Report]) -> Report:
    """Run ``fn`` and store its wall time in the report."""
    start = time.perf_counter()
    report = fn()
    report.seconds = time.perf_counter() - start
    return report


# --- plotting -----------------------------------------------------------------------------


def figure(rows: int, cols: int, title: str) -> tuple[Figure, np.ndarray]:
    """A small figure grid (PNG files stay small), on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    fig.suptitle(title, fontsize=10)
    return fig, axes


def save(fig: Figure, path: Path) -> None:
    """Write the figure as PNG at a modest resolution and free it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def line_panel(ax: Axes, summary: Sequence[Mapping[str, Any]], x: str, line: str, metric: str,
               **levels: Hashable) -> None:
    """One panel: ``metric`` against factor ``x``, one line per level of ``line``, with CIs."""
    subset = [r for r in summary if all(r[k] == v for k, v in levels.items())]
    for name in dict.fromkeys(r[line] for r in subset):
        pts = [r for r in subset if r[line] == name]
        xs = list(range(len(pts))) if isinstance(pts[0][x], str) else [r[x] for r in pts]
        ys = np.array([r[metric] for r in pts])
        err = np.array([[r[metric] - r[f"{metric}_lo"], r[f"{metric}_hi"] - r[metric]] for r in pts]).T
        ax.errorbar(xs, ys, yerr=np.nan_to_num(np.abs(err)), marker="o", ms=3, capsize=2,
                    label=str(name))
        if isinstance(pts[0][x], str):
            ax.set_xticks(xs, [r[x] for r in pts])
    ax.set_title(LABELS.get(metric, metric), fontsize=9)
    ax.set_xlabel(x, fontsize=8)
    ax.tick_params(labelsize=7)


def bar_panel(ax: Axes, summary: Sequence[Mapping[str, Any]], group: Sequence[str], bar: str,
              metric: str, **levels: Hashable) -> None:
    """Grouped bars: groups by the ``group`` factors, one bar per level of ``bar``, with CIs."""
    subset = [r for r in summary if all(r[k] == v for k, v in levels.items())]
    groups = list(dict.fromkeys(tuple(r[g] for g in group) for r in subset))
    bars = list(dict.fromkeys(r[bar] for r in subset))
    width = 0.8 / max(len(bars), 1)
    for j, name in enumerate(bars):
        vals, errs = [], []
        for g in groups:
            r = next(r for r in subset if r[bar] == name and tuple(r[k] for k in group) == g)
            vals.append(r[metric])
            errs.append([r[metric] - r[f"{metric}_lo"], r[f"{metric}_hi"] - r[metric]])
        ax.bar(np.arange(len(groups)) + j * width, vals, width,
               yerr=np.nan_to_num(np.abs(np.array(errs).T)), capsize=2, label=str(name))
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, ["/".join(map(str, g)) for g in groups],
                  fontsize=7, rotation=20)
    ax.set_title(LABELS.get(metric, metric), fontsize=9)
    ax.tick_params(labelsize=7)
