"""The Fig. 6 section of the report: its markdown (setup, table, findings) and its two-panel figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from mercato.experiments.iemas.clustering_config import ClusteringConfig
from mercato.experiments.iemas.common import Options, ci_bars, ci_cells, number, save_figure, with_ci
from mercato.experiments.iemas.paper import CLAIMS
from mercato.reporting import markdown_table


def clustering_markdown(
    summary: list[dict[str, Any]],
    diffs: list[float],
    checked: dict[str, Any] | None,
    config: ClusteringConfig,
    options: Options,
) -> str:
    """The section's markdown: what it tests, the setup, the table over K and what it shows."""
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


def plot_clustering(summary: list[dict[str, Any]], path: Path) -> str:
    """Fig. 6: auction time (log) and welfare share against K; returns the saved file's path."""
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
