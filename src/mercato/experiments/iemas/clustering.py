"""Fig. 6: auction time and social welfare against the number of proxy hubs K (M = 100, N = 200).

The market of M agents and N tasks, its K hubs and the pair values are built in
:mod:`~mercato.experiments.iemas.clustering_market`; this module runs and times the auctions, and
:mod:`~mercato.experiments.iemas.clustering_report` writes the section. Each hub runs its own
exact VCG auction; welfare is the sum over hubs, shown relative to K = 1 (the global optimum).
Time is the auction of every hub with all payments, run one after another (and the largest hub
alone: the critical path when hubs run in parallel), for mercato's residual-graph payments, for
N + 1 re-solves with the same solver, and for the paper's design (pure-Python successive shortest
paths re-solved N + 1 times). That one is measured when no hub has more than
``paper_measure_tasks`` tasks; otherwise each hub's time is extrapolated (labelled) from a power
law in size fitted on random sub-markets of 30-50% of its tasks and agents, and once per run it is
also measured at the smallest K to show how far off the extrapolation is (it underestimates: the
solver's growth steepens with size). Timings are wall-clock on a shared machine: noisy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mercato.experiments.iemas.clustering_config import ClusteringConfig
from mercato.experiments.iemas.clustering_market import hub_instances, make_market
from mercato.experiments.iemas.clustering_report import clustering_markdown, plot_clustering
from mercato.experiments.iemas.common import Options, Section, Stopwatch, all_keys, parallel_map, summarise
from mercato.mechanisms import run_vcg_auction, run_vcg_auction_naive
from mercato.mechanisms.bmatching import usable_weights
from mercato.mechanisms.ssp import ssp_vcg_externalities
from mercato.reporting import write_csv

QUICK = ClusteringConfig(agents=20, tasks=40, ks=(1, 2, 4, 8), repeats=1)


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _paper_design(
    values: NDArray[np.float64], costs: NDArray[np.float64], cap: NDArray[np.int64]
) -> list[float]:
    return ssp_vcg_externalities(usable_weights(values - costs), cap)


def sweep(job: tuple[int, ClusteringConfig, bool]) -> list[dict[str, Any]]:
    """All K of one seed: welfare, matched share and the three methods' times.

    ``check``: also measure the paper's design where it was extrapolated at the smallest K, to
    show how far the extrapolation is off.
    """
    seed, config, check = job
    market = make_market(config, seed)
    rng = np.random.default_rng(seed + 1)
    rows = []
    for k in config.ks:
        hubs = hub_instances(market, k)
        outcomes = [run_vcg_auction(v, c, q) for v, c, q in hubs]
        fast = [
            _median_time(lambda v=v, c=c, q=q: run_vcg_auction(v, c, q), config.repeats) for v, c, q in hubs
        ]
        naive = [
            _median_time(lambda v=v, c=c, q=q: run_vcg_auction_naive(v, c, q), config.repeats)
            for v, c, q in hubs
        ]
        largest = max(v.shape[0] for v, _, _ in hubs)
        row: dict[str, Any] = {
            "seed": seed,
            "k": k,
            "hubs": len(hubs),
            "largest_hub_tasks": largest,
            "welfare": float(sum(o.welfare for o in outcomes)),
            "matched_share": float(sum(o.matched.sum() for o in outcomes)) / config.tasks,
            "time_ms": 1e3 * sum(fast),
            "time_largest_hub_ms": 1e3 * max(fast),
            "naive_time_ms": 1e3 * sum(naive),
        }
        if largest <= config.paper_measure_tasks:
            paper = []
            for (v, c, q), o in zip(hubs, outcomes, strict=True):
                start = time.perf_counter()
                ext = _paper_design(v, c, q)
                paper.append(time.perf_counter() - start)
                diff = float(np.abs(np.array(ext) - o.externality).max()) if len(ext) else 0.0
                row["paper_max_payment_diff"] = max(row.get("paper_max_payment_diff", 0.0), diff)
            row["paper_time_ms"], row["paper_method"] = 1e3 * sum(paper), "measured"
        else:
            row["paper_time_ms"] = 1e3 * sum(
                _extrapolate(v, c, q, config.paper_fractions, rng) for v, c, q in hubs
            )
            row["paper_method"] = "extrapolated"
            if check and k == min(config.ks):
                start = time.perf_counter()
                for v, c, q in hubs:
                    _paper_design(v, c, q)
                row["paper_checked_ms"] = 1e3 * (time.perf_counter() - start)
        rows.append(row)
    best = next(r["welfare"] for r in rows if r["k"] == min(config.ks))
    for r in rows:
        r["welfare_share"] = r["welfare"] / best if best else math.nan
    return rows


def _extrapolate(
    values: NDArray[np.float64],
    costs: NDArray[np.float64],
    cap: NDArray[np.int64],
    fractions: tuple[float, ...],
    rng: np.random.Generator,
) -> float:
    """Seconds the paper's design would take on this hub: a power law in size, fitted on random
    sub-markets (a fraction of its tasks and of its agents, each agent keeping its slots)."""
    n, m = values.shape
    times = []
    for f in fractions:
        rows = rng.choice(n, max(2, min(n, round(f * n))), replace=False)
        cols = rng.choice(m, max(1, min(m, round(f * m))), replace=False)
        start = time.perf_counter()
        _paper_design(values[np.ix_(rows, cols)], costs[np.ix_(rows, cols)], cap[cols])
        times.append(max(time.perf_counter() - start, 1e-6))
    _slope, intercept = np.polyfit(np.log(fractions), np.log(times), 1)
    return float(np.exp(intercept))  # the fitted power law at fraction 1


METRICS: tuple[str, ...] = (
    "welfare",
    "welfare_share",
    "matched_share",
    "time_ms",
    "time_largest_hub_ms",
    "naive_time_ms",
    "paper_time_ms",
    "largest_hub_tasks",
)


def run(options: Options, config: ClusteringConfig | None = None) -> Section:
    """Every seed's K sweep; time and welfare against K with intervals."""
    config = config or (QUICK if options.quick else ClusteringConfig())
    clock = Stopwatch()
    jobs = [(s, config, config.paper_check and s == options.seed) for s in options.seed_list]
    rows = [r for seed_rows in parallel_map(sweep, jobs, options, "clustering") for r in seed_rows]
    summary = summarise(rows, ("k",), METRICS, options.seed)
    for s in summary:
        methods = {r["paper_method"] for r in rows if r["k"] == s["k"]}
        s["paper_method"] = methods.pop() if len(methods) == 1 else "mixed"
    diffs = [r["paper_max_payment_diff"] for r in rows if "paper_max_payment_diff" in r]
    checked = next((r for r in rows if "paper_checked_ms" in r), None)
    out = options.out
    files = [
        write_csv(out / "clustering_runs.csv", rows, all_keys(rows)),
        write_csv(out / "clustering_summary.csv", summary),
        plot_clustering(summary, out / "clustering_fig6.png"),
    ]
    console = [
        {
            "K": s["k"],
            "welfare %": 100 * s["welfare_share"],
            "matched": s["matched_share"],
            "auction ms": s["time_ms"],
            "largest hub ms": s["time_largest_hub_ms"],
            "N+1 same solver ms": s["naive_time_ms"],
            "paper design ms": s["paper_time_ms"],
            "paper": s["paper_method"],
        }
        for s in summary
    ]
    return Section(
        "clustering",
        "Fig. 6: auction time and welfare against the number of hubs",
        clustering_markdown(summary, diffs, checked, config, options),
        {
            "config": vars(config),
            "summary": summary,
            "paper_design_max_payment_diff": max(diffs) if diffs else None,
            "paper_design_check": checked,
        },
        files=[str(f) for f in files],
        tables=[("Hub clustering (mean over seeds)", console, list(console[0]))],
    ).save(out, clock.seconds)

