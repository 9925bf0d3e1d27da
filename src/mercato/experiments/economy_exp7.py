"""Experiment 7 (beyond paper 003): truthful auctions against strategic agents.

The paper's future work (Section VI): once agents inflate their values, do the DSIC auctions it
proposes keep allocations good where value-greedy and the tâtonnement market break? Grid:
topology (tree, SP, entangled) x mechanism (value-greedy, market, VCG over slices, clinching) x
share of strategic agents (0, 25, 50, 75, 100%) x inflation (x1.5, x2), at high load under the
hybrid architecture (agents face integrator slices, where Proposition 2 applies), N = 50, no
governance, seeds paired across conditions. Every rule runs with mercato's ``welfare_aware``
admission (Experiments 1-6 default to the paper's): the auctions' supply is set by that stop, so
the baselines use it too and the comparison isolates the pricing rule.

Two views of the same runs:

* **Forced inflation** -- strategic agents inflate whatever it earns them: welfare, efficiency
  (welfare / value-greedy benchmark on true values), drop rate and revenue as the share grows.
* **Incentives and best response** -- each (share, mechanism) is also run with the same agents
  bidding truthfully (inflation x1; for a 100% share that is the 0% run). The gain from inflating
  is the strategic agents' realised utility per task minus their truthful one, paired by seed
  and tested with Wilcoxon's signed-rank test (Holm within topology x mechanism). Agents who
  respond to incentives pick the factor in {x1, x1.5, x2} with the highest mean utility; the
  welfare at that choice is the *best-response welfare*. Under a DSIC auction inflating should
  not pay, so best-response welfare stays at the truthful level.

Files under ``results/economy/``: ``exp7_runs.csv``, ``exp7_summary.csv``, ``exp7_tests.csv``,
``exp7_incentives.csv``, ``exp7.json``, ``exp7.md`` and ``exp7.png``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from mercato.economy.config import LOAD_LEVELS, EconomyConfig
from mercato.economy.exp7_mechanisms import INFLATIONS, TRUTHFUL_MECHANISMS
from mercato.economy.stats import bca_interval, holm, kruskal, pairwise
from mercato.experiments.economy_report import (
    PAIRWISE,
    Condition,
    Options,
    Report,
    figure,
    line_panel,
    run_conditions,
    save,
    select,
    summarize,
    timed,
    write_report,
)
from mercato.reporting import fmt, markdown_table, write_csv

TOPOLOGIES7: tuple[str, ...] = ("tree", "sp", "entangled")
MECHANISMS7: tuple[str, ...] = ("value_greedy", "market", *TRUTHFUL_MECHANISMS)
SHARES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
LOAD7 = "high"
METRICS7 = ["welfare", "efficiency", "drop_rate", "coverage", "revenue", "utility_truthful",
            "utility_strategic"]
INCENTIVE_COLUMNS = ["topology", "mechanism", "share", "inflation", "n", "gain", "gain_lo",
                     "gain_hi", "signed_rank", "p", "p_holm", "pays"]


def conditions(topologies: Sequence[str] = TOPOLOGIES7,
               shares: Sequence[float] = SHARES) -> list[Condition]:
    """The grid: truthful runs (inflation 1) for every share, inflated runs for every share > 0.

    A 100% share bidding truthfully is the 0% run, so it is not run twice.
    """
    if not topologies or not shares or 0.0 not in shares:
        raise ValueError(f"need at least one topology and a share list that includes 0, got "
                         f"{list(topologies)} and {list(shares)}")
    bad = [s for s in shares if not 0 <= s <= 1]
    if bad:
        raise ValueError(f"shares must lie in [0, 1], got {bad}")
    cells = [(s, 1.0) for s in shares if s < 1.0]
    cells += [(s, x) for s in shares if s > 0 for x in INFLATIONS]
    out = []
    for topology in topologies:
        for mechanism in MECHANISMS7:
            for share, inflation in sorted(cells):
                config = EconomyConfig(topology=topology, arrival_rate=LOAD_LEVELS[LOAD7],
                                       architecture="hybrid", mechanism=mechanism,
                                       strategic_share=share, inflation=inflation,
                                       admission="welfare_aware")
                out.append(Condition({"topology": topology, "mechanism": mechanism, "share": share,
                                      "inflation": inflation}, config))
    return out


def truthful_utility(runs: Sequence[Mapping[str, Any]], topology: str, mechanism: str,
                     share: float) -> np.ndarray:
    """Per-seed utility per task of the agents marked strategic at ``share``, when they are truthful."""
    if share >= 1.0:
        return select(runs, "utility_truthful", topology=topology, mechanism=mechanism, share=0.0)
    return select(runs, "utility_strategic", topology=topology, mechanism=mechanism, share=share,
                  inflation=1.0)


def incentives(runs: Sequence[Mapping[str, Any]], topologies: Sequence[str],
               shares: Sequence[float], seed: int) -> list[dict[str, Any]]:
    """Gain from inflating, per topology x mechanism x share x factor, paired by seed."""
    rows = []
    for topology in topologies:
        for mechanism in MECHANISMS7:
            family = []
            for share in (s for s in shares if s > 0):
                base = truthful_utility(runs, topology, mechanism, share)
                for inflation in INFLATIONS:
                    lied = select(runs, "utility_strategic", topology=topology, mechanism=mechanism,
                                  share=share, inflation=inflation)
                    diff = lied - base
                    est = bca_interval(diff, seed=seed)
                    stat, p = _signed_rank(diff)
                    family.append({"topology": topology, "mechanism": mechanism, "share": share,
                                   "inflation": inflation, "n": int(np.isfinite(diff).sum()),
                                   "gain": est.mean, "gain_lo": est.low, "gain_hi": est.high,
                                   "signed_rank": stat, "p": p})
            for row, p_adj in zip(family, holm([r["p"] for r in family]), strict=True):
                row["p_holm"] = p_adj
                row["pays"] = bool(row["gain"] > 0 and p_adj < 0.05)
            rows += family
    return rows


def _signed_rank(diff: np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of paired differences; NaNs when all are zero."""
    d = diff[np.isfinite(diff)]
    if d.size == 0 or not np.any(d):
        return float("nan"), float("nan")
    res = scipy_stats.wilcoxon(d, zero_method="zsplit")
    return float(res.statistic), float(res.pvalue)


def best_response(runs: Sequence[Mapping[str, Any]], topologies: Sequence[str],
                  shares: Sequence[float], seed: int) -> list[dict[str, Any]]:
    """Welfare when strategic agents pick the inflation factor that earns them most on average."""
    rows = []
    for topology in topologies:
        for mechanism in MECHANISMS7:
            truthful_welfare = select(runs, "welfare", topology=topology, mechanism=mechanism, share=0.0)
            for share in shares:
                options = {1.0: truthful_utility(runs, topology, mechanism, share)} if share > 0 else {}
                options.update({x: select(runs, "utility_strategic", topology=topology,
                                          mechanism=mechanism, share=share, inflation=x)
                                for x in INFLATIONS if share > 0})
                choice = max(options, key=lambda x: (np.nanmean(options[x]), -x)) if options else 1.0
                if choice == 1.0:
                    welfare = truthful_welfare
                else:
                    welfare = select(runs, "welfare", topology=topology, mechanism=mechanism,
                                     share=share, inflation=choice)
                est = bca_interval(welfare, seed=seed)
                base = float(np.mean(truthful_welfare))
                rows.append({"topology": topology, "mechanism": mechanism, "share": share,
                             "chosen_inflation": choice, "welfare": est.mean, "welfare_lo": est.low,
                             "welfare_hi": est.high,
                             "welfare_change": est.mean / base - 1.0 if base > 0 else float("nan")})
    return rows


def welfare_tests(runs: Sequence[Mapping[str, Any]], topologies: Sequence[str],
                  shares: Sequence[float]) -> list[dict[str, Any]]:
    """Kruskal-Wallis over mechanisms and rank-sum pairs, per topology, under x2 inflation."""
    tests: list[dict[str, Any]] = []
    for topology in topologies:
        for share in shares:
            inflation = 1.0 if share == 0 else max(INFLATIONS)
            groups = {m: select(runs, "welfare", topology=topology, mechanism=m, share=share,
                                inflation=inflation) for m in MECHANISMS7}
            family = f"{topology}/share={share:g}/x{inflation:g}"
            h, p = kruskal(list(groups.values()))
            tests.append({"family": family, "metric": "welfare", "test": "Kruskal-Wallis over mechanism",
                          "a": "", "b": "", "statistic": h, "p": p, "p_holm": "", "delta": "",
                          "magnitude": ""})
            tests += [{"family": family, "metric": "welfare", "test": PAIRWISE, "a": c.a, "b": c.b,
                       "statistic": c.u, "p": c.p, "p_holm": c.p_holm, "delta": c.delta,
                       "magnitude": c.magnitude}
                      for c in pairwise(groups, [("vcg", "value_greedy"), ("vcg", "market"),
                                                 ("clinching", "value_greedy")])]
    return tests


def vcg_clinching_gap(runs: Sequence[Mapping[str, Any]]) -> tuple[float, int]:
    """Largest |VCG - clinching| over paired runs and metrics, and how many pairs were compared."""
    keys = ("topology", "share", "inflation", "seed")
    vcg = {tuple(r[k] for k in keys): r for r in runs if r["mechanism"] == "vcg"}
    gap, pairs = 0.0, 0
    for r in runs:
        twin = vcg.get(tuple(r[k] for k in keys)) if r["mechanism"] == "clinching" else None
        if twin is None:
            continue
        pairs += 1
        for m in ("welfare", "revenue", "utility_truthful", "utility_strategic", "drop_rate"):
            if math.isfinite(r[m]) or math.isfinite(twin[m]):
                gap = max(gap, abs(r[m] - twin[m]))
    return gap, pairs


def experiment7(options: Options, topologies: Sequence[str] = TOPOLOGIES7,
                shares: Sequence[float] = SHARES) -> tuple[Report, list[dict[str, Any]],
                                                           list[dict[str, Any]]]:
    """Run the grid; the report plus the incentive and best-response tables."""
    conds = conditions(topologies, shares)
    runs = run_conditions(conds, options, "exp 7: strategic agents")
    summary = summarize(runs, conds, METRICS7, None, options.seed)
    gains = incentives(runs, topologies, shares, options.seed)
    responses = best_response(runs, topologies, shares, options.seed)
    tests = welfare_tests(runs, topologies, shares)
    return (Report("7", "truthful auctions vs strategic agents (hybrid, high load)",
                   ["topology", "mechanism", "share", "inflation"], METRICS7, runs, summary, tests,
                   _notes(runs, gains, responses, topologies),
                   paper_table="none (beyond the paper)"),
            gains, responses)


def _notes(runs: Sequence[Mapping[str, Any]], gains: Sequence[Mapping[str, Any]],
           responses: Sequence[Mapping[str, Any]], topologies: Sequence[str]) -> list[str]:
    gap, pairs = vcg_clinching_gap(runs)
    notes = [f"VCG over slices and the clinching auction agree on {pairs} paired runs to within "
             f"{gap:.1e} (welfare, revenue, utilities, drop rate): with one slice type and no "
             "budgets both give the efficient allocation with (supply + 1)-th price payments."]
    for mechanism in MECHANISMS7:
        mine = [g for g in gains if g["mechanism"] == mechanism]
        paying = sum(g["pays"] for g in mine)
        worst = max((g["gain"] for g in mine), default=float("nan"))
        notes.append(f"{mechanism}: inflating pays (gain > 0, Holm p < 0.05) in {paying} of {len(mine)} "
                     f"cells; largest mean gain {fmt(worst)} utility per task.")
    for topology in topologies:
        full = {r["mechanism"]: r for r in responses if r["topology"] == topology and r["share"] == 1.0}
        if full:
            notes.append(f"{topology}, everyone strategic and best-responding: " + ", ".join(
                f"{m} x{full[m]['chosen_inflation']:g} welfare {fmt(full[m]['welfare'])} "
                f"({full[m]['welfare_change']:+.1%})" for m in MECHANISMS7 if m in full) + ".")
    notes.append("Utilities are realised (value of on-time tasks minus payments), while bids are "
                 "expected values under the agents' pessimistic latency estimate; DSIC is a property "
                 "of the per-round auction on those expected values.")
    return notes


def plot7(report: Report, path: Path, gains: Sequence[Mapping[str, Any]],
          responses: Sequence[Mapping[str, Any]], topologies: Sequence[str]) -> None:
    """Rows: welfare under x2 inflation, best-response welfare, gain from x2; one column per topology."""
    strongest = max(INFLATIONS)
    forced = [r for r in report.summary if r["inflation"] == strongest or r["share"] == 0.0]
    gain_x2 = [g for g in gains if g["inflation"] == strongest]
    fig, axes = figure(3, len(topologies), "Experiment 7: strategic agents (hybrid, high load)")
    for col, topology in enumerate(topologies):
        line_panel(axes[0][col], forced, "share", "mechanism", "welfare", topology=topology)
        axes[0][col].set_title(f"{topology}: welfare, x{strongest:g} inflation", fontsize=8)
        line_panel(axes[1][col], list(responses), "share", "mechanism", "welfare", topology=topology)
        axes[1][col].set_title(f"{topology}: best-response welfare", fontsize=8)
        line_panel(axes[2][col], gain_x2, "share", "mechanism", "gain", topology=topology)
        axes[2][col].axhline(0.0, color="grey", lw=0.5)
        axes[2][col].set_title(f"{topology}: gain from x{strongest:g} (utility/task)", fontsize=8)
    axes[0][0].legend(fontsize=6)
    save(fig, path)


def run_exp7(seeds: int = 10, out_dir: Path = Path("results/economy"), *, seed: int = 0,
             rounds: int = 200, workers: int = 2, show_progress: bool = True,
             topologies: Sequence[str] = TOPOLOGIES7, shares: Sequence[float] = SHARES) -> Report:
    """Run Experiment 7 with ``seeds`` seeds from ``seed`` and write its files under ``out_dir``."""
    options = Options(seed=seed, seeds=seeds, rounds=rounds, workers=workers, out=out_dir,
                      show_progress=show_progress)
    tables: dict[str, list[dict[str, Any]]] = {}

    def go() -> Report:
        report, tables["incentives"], tables["responses"] = experiment7(options, topologies, shares)
        return report

    report = timed(go)

    def plot(r: Report, path: Path) -> None:
        plot7(r, path, tables["incentives"], tables["responses"], topologies)

    write_report(report, out_dir, plot)
    extra = [write_csv(out_dir / "exp7_incentives.csv", tables["incentives"], INCENTIVE_COLUMNS),
             write_csv(out_dir / "exp7_best_response.csv", tables["responses"])]
    md = Path(next(f for f in report.files if f.endswith(".md")))
    md.write_text(md.read_text() + _markdown_tables(tables["incentives"], tables["responses"]))
    report.files += [str(f) for f in extra]
    return report


def run(options: Options) -> Report:
    """Entry point of ``mercato experiment economy 7`` (and ``all``)."""
    return run_exp7(options.seeds, options.out, seed=options.seed, rounds=options.rounds,
                    workers=options.workers, show_progress=options.show_progress)


def _markdown_tables(gains: Sequence[Mapping[str, Any]], responses: Sequence[Mapping[str, Any]]) -> str:
    gain_rows = [[g["topology"], g["mechanism"], f"{g['share']:g}", f"x{g['inflation']:g}",
                  f"{fmt(g['gain'])} [{fmt(g['gain_lo'])}, {fmt(g['gain_hi'])}]", fmt(g["p_holm"]),
                  "yes" if g["pays"] else "no"] for g in gains]
    response_rows = [[r["topology"], r["mechanism"], f"{r['share']:g}", f"x{r['chosen_inflation']:g}",
                      f"{fmt(r['welfare'])} [{fmt(r['welfare_lo'])}, {fmt(r['welfare_hi'])}]",
                      f"{r['welfare_change']:+.1%}"] for r in responses]
    return "\n".join([
        "", "### Does inflating pay? (strategic agents' utility per task, inflated minus truthful, "
        "paired by seed)", "",
        markdown_table(["topology", "mechanism", "share", "inflation", "gain [95% CI]", "Holm p", "pays"],
                       gain_rows),
        "### Best-response welfare (strategic agents choose x1, x1.5 or x2)", "",
        markdown_table(["topology", "mechanism", "share", "chosen", "welfare [95% CI]", "vs 0% strategic"],
                       response_rows),
    ])

