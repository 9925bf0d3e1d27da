"""Fig. 6: auction time and social welfare against the number of proxy hubs K (M = 100, N = 200).

A market snapshot per seed: M agents of the four engine profiles, each specialised in one of the
three workload domains (a specialist answers its domain 0.1 better and others 0.1 worse than its
profile does), with 1-3 free slots; N concurrent tasks with a domain, a prompt of 300-1,500 tokens
and a bid in [0.8, 1.6]. 60% of the tasks continue a session whose KV prefix (85% of the prompt)
sits at one agent. For each K, :func:`~mercato.gateway.hubs.build_hubs` groups the agents into K
hubs by specialisation ("ideal" scheme) and its front classifier sends each task to a hub by
domain (ties by session hash). A session keeps to its hub, so its prefix sits at a specialist of
its domain inside that hub.

Pair values follow the Router: ``v = bid x (0.5 x 200 x P - 0.5 x 100 x TTFT)`` with TTFT the
uncached prefill plus one decode step at the agent's profile speed, and ``c`` the Eq. 6 cost of
the prompt and 32 output tokens. Each hub runs its own exact VCG auction; welfare is the sum over
hubs, shown relative to K = 1 (the global optimum). Time is the auction of every hub with all
payments, run one after another (and the largest hub alone: the critical path when hubs run in
parallel), for mercato's residual-graph payments, for N + 1 re-solves with the same solver, and
for the paper's design (pure-Python successive shortest paths re-solved N + 1 times). That one is
measured when no hub has more than ``paper_measure_tasks`` tasks; otherwise each hub's time is
extrapolated (labelled) from a power law in size fitted on random sub-markets of 30-50% of its
tasks and agents, and once per run it is also measured at the smallest K to show how far off the
extrapolation is (it underestimates: the solver's growth steepens with size). Timings are
wall-clock on a shared machine: noisy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import NDArray

from mercato.engine import PROFILES, get_profile
from mercato.experiments.iemas.common import (
    Options,
    Section,
    Stopwatch,
    all_keys,
    ci_bars,
    ci_cells,
    number,
    parallel_map,
    save_figure,
    summarise,
    with_ci,
)
from mercato.experiments.iemas.paper import CLAIMS
from mercato.gateway.hubs import build_hubs
from mercato.gateway.types import BackendSpec, BuyerReport, RouteRequest
from mercato.gateway.valuation import ValuationSettings
from mercato.mechanisms import run_vcg_auction, run_vcg_auction_naive
from mercato.mechanisms.bmatching import usable_weights
from mercato.mechanisms.ssp import ssp_vcg_externalities
from mercato.reporting import markdown_table, write_csv

DOMAINS: tuple[str, ...] = ("coqa", "quac", "hotpotqa")
SPECIALIST_BONUS = 0.1
PREFIX_SHARE = 0.6
PREFIX_COVER = 0.85
OUTPUT_TOKENS = 32


@dataclass(frozen=True)
class ClusteringConfig:
    """Market size, the K sweep and when the paper's design is measured rather than extrapolated."""

    agents: int = 100
    tasks: int = 200
    ks: tuple[int, ...] = tuple(range(1, 21))
    max_free_slots: int = 3  # an agent offers 1..max_free_slots slots
    repeats: int = 3  # timing repetitions of the fast methods (median)
    paper_measure_tasks: int = 60  # measure the pure-Python design when no hub has more tasks
    paper_fractions: tuple[float, ...] = (0.3, 0.4, 0.5)  # sub-market sizes its extrapolation fits
    paper_check: bool = True  # also measure it on the first seed's largest extrapolated hub set (slow)

    def __post_init__(self) -> None:
        if self.agents < 1 or self.tasks < 1 or self.repeats < 1:
            raise ValueError("agents, tasks and repeats must be >= 1")
        if not self.ks or min(self.ks) < 1 or max(self.ks) > self.agents:
            raise ValueError(f"every K must be between 1 and the number of agents ({self.agents})")
        if self.max_free_slots < 1 or self.paper_measure_tasks < 1:
            raise ValueError("max_free_slots and paper_measure_tasks must be >= 1")
        if len(self.paper_fractions) < 2 or not all(0.0 < f < 1.0 for f in self.paper_fractions):
            raise ValueError("paper_fractions needs at least two fractions in (0, 1)")


QUICK = ClusteringConfig(agents=20, tasks=40, ks=(1, 2, 4, 8), repeats=1)


@dataclass
class Market:
    """One seed's agents and tasks, before any clustering."""

    agents: list[BackendSpec]
    requests: list[RouteRequest]
    prompt: NDArray[np.float64]  # (N,) prompt tokens
    bid: NDArray[np.float64]
    has_prefix: NDArray[np.bool_]
    holder_draw: NDArray[np.float64]  # (N,) uniform draw that picks the prefix holder within a hub


def make_market(config: ClusteringConfig, seed: int) -> Market:
    """Agents (profiles and specialisations in rotation, random free slots) and tasks of one seed."""
    rng = np.random.default_rng(seed)
    names = list(PROFILES)
    agents = []
    for i in range(config.agents):
        p = PROFILES[names[i % len(names)]]
        agents.append(
            BackendSpec(
                name=f"a{i:03d}",
                model=p.name,
                capacity=int(rng.integers(1, config.max_free_slots + 1)),
                price_input=p.price_input,
                price_cached_input=p.price_cached_input,
                price_output=p.price_output,
                profile=p.name,
                domains=(DOMAINS[i % len(DOMAINS)],),
            )
        )
    domain = rng.integers(0, len(DOMAINS), config.tasks)
    prompt = rng.integers(300, 1501, config.tasks).astype(np.float64)
    bid = rng.uniform(0.8, 1.6, config.tasks)
    requests = [
        RouteRequest(
            request_id=f"t{j}",
            prompt="",
            prompt_tokens=int(prompt[j]),
            max_tokens=OUTPUT_TOKENS,
            session_id=f"s{seed}-{j}",
            turn=1,
            domain=DOMAINS[domain[j]],
            source="synthetic",
            buyer=f"b{j}",
            report=BuyerReport(bid=float(bid[j])),
            arrival=0.0,
        )
        for j in range(config.tasks)
    ]
    return Market(
        agents, requests, prompt, bid, rng.random(config.tasks) < PREFIX_SHARE, rng.random(config.tasks)
    )


def hub_instances(
    market: Market, k: int
) -> list[tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]]:
    """(values, costs, capacities) of every non-empty hub when the agents form ``k`` ideal hubs."""
    hubs, classifier = build_hubs("ideal", market.agents, k)
    by_name = {a.name: a for a in market.agents}
    members: dict[str, list[int]] = {h.name: [] for h in hubs}
    for j, req in enumerate(market.requests):
        members[classifier.choose(req, hubs).name].append(j)
    valuation = ValuationSettings()
    out = []
    for hub in hubs:
        tasks = members[hub.name]
        if not tasks:
            continue
        agents = [by_name[b] for b in hub.backends]
        values, costs = np.empty((len(tasks), len(agents))), np.empty((len(tasks), len(agents)))
        for row, j in enumerate(tasks):
            req = market.requests[j]
            specialists = [i for i, a in enumerate(agents) if req.domain in a.domains] or list(
                range(len(agents))
            )
            holder = (
                specialists[int(market.holder_draw[j] * len(specialists))] if market.has_prefix[j] else -1
            )
            for col, a in enumerate(agents):
                p = get_profile(a.profile or a.model)
                quality = p.quality_for(req.domain or "default")
                quality += SPECIALIST_BONUS if req.domain in a.domains else -SPECIALIST_BONUS
                cached = PREFIX_COVER * market.prompt[j] if col == holder else 0.0
                uncached = market.prompt[j] - cached
                ttft = uncached / p.prefill_tokens_per_s + p.decode_step_seconds(1)
                values[row, col] = market.bid[j] * (
                    0.5 * valuation.quality_value * min(max(quality, 0.0), 1.0)
                    - 0.5 * valuation.latency_penalty_per_s * ttft
                )
                costs[row, col] = a.cost(int(market.prompt[j]), int(cached), OUTPUT_TOKENS)
        out.append((values, costs, np.array([a.capacity for a in agents], dtype=np.int64)))
    return out


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
        _plot(summary, out / "clustering_fig6.png"),
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
        _markdown(summary, diffs, checked, config, options),
        {
            "config": vars(config),
            "summary": summary,
            "paper_design_max_payment_diff": max(diffs) if diffs else None,
            "paper_design_check": checked,
        },
        files=[str(f) for f in files],
        tables=[("Hub clustering (mean over seeds)", console, list(console[0]))],
    ).save(out, clock.seconds)


def _markdown(
    summary: list[dict[str, Any]],
    diffs: list[float],
    checked: dict[str, Any] | None,
    config: ClusteringConfig,
    options: Options,
) -> str:
    k1 = summary[0]
    lines = [
        "## Fig. 6: auction time and welfare against the number of hubs",
        "",
        "**What it tests.** Whether splitting a large market into K proxy hubs, each auctioning its own "
        "tasks, buys speed at little cost in social welfare (the fragmentation penalty).",
        "",
        f"**Paper.** {CLAIMS['clustering']}",
        "",
        f"**Setup.** M = {config.agents} agents (qwen3-4b, qwen3-8b, llama3-8b and qwen3-32b profiles in "
        f"rotation, each specialised in one of three domains, 1-3 free slots), N = {config.tasks} "
        "concurrent tasks; hubs by specialisation (`ideal`), tasks to their domain's hub; 60% of the "
        "tasks hold an 85% KV prefix at a specialist inside their hub. Welfare is the sum of the hubs' "
        "optimal welfare, relative to K = 1. Times: wall-clock ms for all hubs' auctions with all VCG "
        f"payments run in turn (median of {config.repeats}), and for the largest hub alone. Mean over "
        "seeds [95% BCa interval]. Timings were taken on a 2-core machine shared with other work: noisy.",
        "",
    ]
    if options.quick:
        lines += ["*Reduced size (--quick): not the full experiment.*", ""]
    rows = [
        [
            s["k"],
            with_ci(s, "welfare_share", 4, 100.0),
            with_ci(s, "matched_share", 3),
            *ci_cells(s, ("time_ms", "time_largest_hub_ms", "naive_time_ms")),
            f"{with_ci(s, 'paper_time_ms')} ({s['paper_method']})",
        ]
        for s in summary
    ]
    lines.append(
        markdown_table(
            [
                "K",
                "welfare (% of K=1)",
                "matched share",
                "auction ms (all hubs)",
                "largest hub ms",
                "N+1 re-solves, same solver ms",
                "paper design ms",
            ],
            rows,
        )
    )
    last = summary[-1]
    check = (
        f"Where the paper's design was measured, its VCG externalities matched mercato's to "
        f"{number(max(diffs), 2)} credits (both exact)."
        if diffs
        else ""
    )
    if checked is not None:
        check += (
            f" Extrapolation check (seed {checked['seed']}, K = {checked['k']}): predicted "
            f"{number(checked['paper_time_ms'] / 1e3)} s, measured "
            f"{number(checked['paper_checked_ms'] / 1e3)} s; the solver's growth steepens with size, so "
            "the extrapolated values are best read as lower bounds."
        )
    lines += [
        f"At K = {k1['k']} one auction of {config.tasks} tasks x {config.agents} agents with all payments "
        f"took {number(k1['time_ms'])} ms with mercato's residual-graph payments, "
        f"{number(k1['naive_time_ms'])} ms with N + 1 re-solves of the same solver, and "
        f"{number(k1['paper_time_ms'] / 1e3)} s with the paper's pure-Python design ({k1['paper_method']}). "
        f"At K = {last['k']}: {number(last['time_ms'])} ms, keeping "
        f"{number(100 * last['welfare_share'], 4)}% of the global welfare. {check}",
        "",
        "![Fig. 6: time and welfare against K](clustering_fig6.png)",
        "",
    ]
    return "\n".join(lines) + "\n"


def _plot(summary: list[dict[str, Any]], path: Path) -> str:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    ks = np.array([s["k"] for s in summary])
    for key, label, style in (
        ("time_ms", "mercato (all hubs)", "-o"),
        ("time_largest_hub_ms", "mercato (largest hub)", "--o"),
        ("naive_time_ms", "N+1 re-solves, same solver", "-s"),
    ):
        left.plot(ks, [s[key] for s in summary], style, markersize=3, label=label)
    measured = np.array([s["paper_method"] == "measured" for s in summary])
    paper = np.array([s["paper_time_ms"] for s in summary])
    left.plot(ks, paper, ":", color="tab:red")
    left.plot(
        ks[measured], paper[measured], "o", color="tab:red", markersize=4, label="paper design (measured)"
    )
    left.plot(
        ks[~measured],
        paper[~measured],
        "o",
        markerfacecolor="none",
        color="tab:red",
        markersize=4,
        label="paper design (extrapolated)",
    )
    left.set_yscale("log")
    left.set_xlabel("hubs K")
    left.set_ylabel("auction + payments (ms, log)")
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    share, err = ci_bars(summary, "welfare_share", 100.0)
    right.errorbar(ks, share, yerr=err, fmt="-o", markersize=3, capsize=2)
    right.set_xlabel("hubs K")
    right.set_ylabel("social welfare (% of K = 1)")
    right.grid(alpha=0.3)
    return save_figure(fig, path)
