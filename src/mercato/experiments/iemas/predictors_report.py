"""The Fig. 3 section of the report: console table, markdown, the curves figure and the ablation bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from mercato.experiments.iemas.common import Options, ci_bars, ci_cells, number, save_figure, with_ci
from mercato.experiments.iemas.paper import CLAIMS, NMAE
from mercato.experiments.iemas.predictors_config import PredictorsConfig
from mercato.experiments.iemas.predictors_errors import TARGETS
from mercato.experiments.iemas.predictors_variants import VARIANTS
from mercato.reporting import markdown_table


def predictors_console(summary: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    """The console table: each variant's NMAEs and routing outcomes, then the paper's NMAEs."""
    rows = [
        {
            "variant": r["variant"],
            "NMAE latency": r["nmae_latency"],
            "NMAE cost": r["nmae_cost"],
            "NMAE accuracy": r["nmae_accuracy"],
            "oracle accuracy": r["nmae_accuracy_oracle"],
            "per-turn lat": r["turn_nmae_latency"],
            "per-turn cost": r["turn_nmae_cost"],
            "per-turn acc": r["turn_nmae_accuracy"],
            "cost": r["mean_cost"],
            "TTFT p50": r["ttft_p50_ms"],
            "KV hit": r["kv_hit_rate"],
            "welfare": r["welfare"],
        }
        for r in summary
    ]
    paper = {
        **dict.fromkeys(rows[0], ""),
        "variant": "paper",
        "NMAE latency": NMAE["latency"],
        "NMAE cost": NMAE["cost"],
        "NMAE accuracy": NMAE["accuracy"],
    }
    return [
        (
            "Predictors: NMAE (means over seeds) and routing outcomes of the auction",
            [*rows, paper],
            list(rows[0]),
        )
    ]


def predictors_markdown(summary: list[dict[str, Any]], config: PredictorsConfig, options: Options) -> str:
    """The section's markdown: what it tests, the setup, the NMAE table and the routing outcomes."""
    lines = [
        "## Fig. 3: predicted against observed latency, cost and accuracy",
        "",
        "**What it tests.** The auction is only as good as the QoS predictions it prices: whether the "
        "per-backend online predictors track TTFT, Eq. 6 cost and correctness as dialogues grow, and "
        "what the IEMAS reference's one-hot encoding of numeric features would cost.",
        "",
        f"**Paper.** {CLAIMS['predictors']}",
        "",
        f"**Setup.** {config.dialogues} CoQA-like dialogues of {config.turns} turns, {config.concurrency} "
        "in flight, on the Table 1 fleet under the auction; predictions are those made for the serving "
        "backend before its outcome was learned. Per-request NMAE = sum |predicted - observed| / "
        f"sum |observed| over the last {config.tail:.0%} of requests (finishing order); per-turn NMAE: the "
        "same over the per-turn means (the curves below). Oracle: the per-request accuracy NMAE of the "
        "engine's true probability of a correct answer, the floor for any probability forecast. "
        "Mean over seeds [95% BCa interval].",
        "",
    ]
    if options.quick:
        lines += ["*Reduced size (--quick): not the full experiment.*", ""]
    header = [
        "variant",
        "NMAE latency",
        "NMAE cost",
        "NMAE accuracy (oracle)",
        "per-turn latency",
        "per-turn cost",
        "per-turn accuracy",
    ]
    rows = [
        [
            r["variant"],
            with_ci(r, "nmae_latency"),
            with_ci(r, "nmae_cost"),
            f"{with_ci(r, 'nmae_accuracy')} ({number(r['nmae_accuracy_oracle'])})",
            *ci_cells(r, ("turn_nmae_latency", "turn_nmae_cost", "turn_nmae_accuracy")),
        ]
        for r in summary
    ]
    rows.append(
        ["paper (IEMAS)", number(NMAE["latency"]), number(NMAE["cost"]), number(NMAE["accuracy"]), "", "", ""]
    )
    lines += [markdown_table(header, rows)]
    lines += [
        "Variants: " + "; ".join(f"`{v}`: {VARIANTS[v]}" for v in config.variants) + ".",
        "",
        "### What the predictors change in routing (auction policy, same workload)",
        "",
    ]
    rows = [
        [
            r["variant"],
            *ci_cells(r, ("kv_hit_rate", "mean_cost", "ttft_p50_ms", "ttft_p95_ms", "accuracy", "welfare")),
            with_ci(r, "paid_share", 2),
        ]
        for r in summary
    ]
    lines += [
        markdown_table(
            [
                "variant",
                "KV hit",
                "cost (credits)",
                "TTFT p50 ms",
                "TTFT p95 ms",
                "accuracy",
                "welfare",
                "paid",
            ],
            rows,
        ),
        "![Fig. 3: predicted vs observed](predictors_fig3.png)",
        "",
        "![Predictor ablation](predictors_ablation.png)",
        "",
    ]
    return "\n".join(lines) + "\n"


def plot_predicted_curves(curves: list[dict[str, Any]], config: PredictorsConfig, path: Path) -> str:
    """Fig. 3: observed and predicted per-turn means of each target; returns the saved file's path."""
    labels = {"latency": "TTFT (s)", "cost": "cost (credits)", "accuracy": "P(correct)"}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    styles = {"mercato": "-", "reference_onehot": "-.", "trees_numeric": ":", "trees_onehot": "--"}
    for ax, target in zip(axes, TARGETS, strict=True):
        obs = [c for c in curves if c["variant"] == "mercato" and c["target"] == target]
        turns = [c["turn"] for c in obs]
        ax.plot(turns, [c["obs"] for c in obs], color="black", marker="o", markersize=3, label="observed")
        ax.fill_between(
            turns, [c["obs_lo"] for c in obs], [c["obs_hi"] for c in obs], color="black", alpha=0.1
        )
        for variant in config.variants:
            pred = [c for c in curves if c["variant"] == variant and c["target"] == target]
            ax.plot(
                turns, [c["pred"] for c in pred], linestyle=styles[variant], label=f"predicted ({variant})"
            )
            if variant == "mercato":
                ax.fill_between(turns, [c["pred_lo"] for c in pred], [c["pred_hi"] for c in pred], alpha=0.15)
        ax.set_xlabel("turn")
        ax.set_title(labels[target], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return save_figure(fig, path)


def plot_ablation(summary: list[dict[str, Any]], path: Path) -> str:
    """Per-request NMAE of each variant and target against the paper's (dotted)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = [r["variant"] for r in summary]
    width = 0.27
    for k, target in enumerate(TARGETS):
        mean, err = ci_bars(summary, f"nmae_{target}")
        ax.bar(np.arange(len(names)) + (k - 1) * width, mean, width, yerr=err, capsize=2, label=target)
        ax.axhline(NMAE[target], color=f"C{k}", linestyle=":", linewidth=1)
    ax.set_xticks(np.arange(len(names)), names, fontsize=8)
    ax.set_ylabel("per-request NMAE (dotted: paper)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)
