"""Fig. 4: social welfare accumulated over 160 dialogue turns, for every routing policy.

160 turns = 32 CoQA-like dialogues of 5 turns, all in flight at once on the Table 1 fleet. Each
served turn adds the buyer's realised value (IEMAS Eq. 1 with mercato's scales: 200 credits for
a correct answer weighted by delta = 0.5, minus 1000 credits per second of TTFT weighted by 0.5)
minus its observed Eq. 6 cost; the curve is the running sum in the order turns finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from mercato.experiments.iemas.common import (
    FLEET,
    GPU_MEMORY_UTILIZATION,
    Options,
    Section,
    Stopwatch,
    ci_cells,
    parallel_map,
    population,
    realised_welfare,
    request_metrics,
    require_known,
    save_figure,
    summarise,
)
from mercato.experiments.iemas.paper import CLAIMS
from mercato.experiments.iemas.table1 import ORDER
from mercato.gateway.core.policies import POLICY_NAMES
from mercato.gateway.sim.cluster import InProcessCluster
from mercato.reporting import markdown_table, write_csv
from mercato.workloads import synthetic_dialogues

METRICS: tuple[str, ...] = (
    "welfare",
    "welfare_per_turn",
    "kv_hit_rate",
    "mean_cost",
    "ttft_p50_ms",
    "accuracy",
)


@dataclass(frozen=True)
class WelfareConfig:
    """Dialogues x turns = the turns on the curve (paper: 160)."""

    dialogues: int = 32
    turns: int = 5
    concurrency: int = 32
    policies: tuple[str, ...] = ORDER
    fleet: tuple[str, ...] = FLEET

    def __post_init__(self) -> None:
        require_known("policies", self.policies, POLICY_NAMES)
        if min(self.dialogues, self.turns, self.concurrency) < 1:
            raise ValueError("dialogues, turns and concurrency must be >= 1")

    @property
    def total_turns(self) -> int:
        """Turns served per run."""
        return self.dialogues * self.turns


QUICK = WelfareConfig(dialogues=8, turns=3, concurrency=8, policies=("auction", "random", "cache_aware"))


def run_policy(job: tuple[str, int, WelfareConfig]) -> dict[str, Any]:
    """One policy, one seed: the cumulative welfare curve and the run's metrics."""
    policy, seed, config = job
    cluster = InProcessCluster(
        population(config.fleet), policy, gpu_memory_utilization=GPU_MEMORY_UTILIZATION, seed=seed
    )
    logs = cluster.run(
        synthetic_dialogues("coqa", config.dialogues, seed, turns=config.turns),
        concurrency=config.concurrency,
    )
    curve = np.cumsum([realised_welfare(x) for x in logs])
    metrics = request_metrics(logs)
    return {
        "policy": policy,
        "seed": seed,
        **metrics,
        "welfare_per_turn": metrics["welfare"] / len(logs),
        "curve": curve.tolist(),
    }


def run(options: Options, config: WelfareConfig | None = None) -> Section:
    """Every policy on every seed; the Fig. 4 curves and final welfare with intervals."""
    config = config or (QUICK if options.quick else WelfareConfig())
    clock = Stopwatch()
    jobs = [(p, s, config) for p in config.policies for s in options.seed_list]
    runs = parallel_map(run_policy, jobs, options, "welfare")
    flat = [{k: v for k, v in r.items() if k != "curve"} for r in runs]
    summary = summarise(flat, ("policy",), METRICS, options.seed)
    ranking = [r["policy"] for r in sorted(summary, key=lambda r: -r["welfare"])]
    out = options.out
    files = [
        write_csv(out / "welfare_runs.csv", flat),
        write_csv(out / "welfare_summary.csv", summary),
        _plot(runs, config, out / "welfare_fig4.png"),
    ]
    rows = [
        {
            "policy": r["policy"],
            "welfare": r["welfare"],
            "low": r["welfare_lo"],
            "high": r["welfare_hi"],
            "per turn": r["welfare_per_turn"],
            "KV hit": r["kv_hit_rate"],
            "cost": r["mean_cost"],
            "accuracy": r["accuracy"],
        }
        for r in summary
    ]
    return Section(
        "welfare",
        "Fig. 4: social welfare over 160 dialogue turns",
        _markdown(summary, ranking, config, options),
        {
            "config": vars(config) | {"total_turns": config.total_turns},
            "summary": summary,
            "ranking": ranking,
        },
        files=[str(f) for f in files],
        tables=[(f"Social welfare after {config.total_turns} turns (mean over seeds)", rows, list(rows[0]))],
    ).save(out, clock.seconds)


def _markdown(
    summary: list[dict[str, Any]], ranking: list[str], config: WelfareConfig, options: Options
) -> str:
    lines = [
        "## Fig. 4: social welfare over 160 dialogue turns",
        "",
        "**What it tests.** Whether pricing cache affinity, latency, quality and cost together makes the "
        "auction accumulate more social welfare (buyers' realised value minus service cost) than "
        "policies that look at load, cache or quality alone.",
        "",
        f"**Paper.** {CLAIMS['welfare']}",
        "",
        f"**Setup.** {config.dialogues} CoQA-like dialogues x {config.turns} turns = {config.total_turns} "
        f"turns, all {config.concurrency} dialogues in flight, Table 1 fleet. Welfare of a turn = "
        "bid x (0.5 x 200 x correct - 0.5 x 100 x TTFT in s) - Eq. 6 cost, in credits. Mean over seeds "
        "[95% BCa interval]; the plot's bands are the range over seeds.",
        "",
    ]
    if options.quick:
        lines += ["*Reduced size (--quick): not the full experiment.*", ""]
    lines.append(
        markdown_table(
            [
                "policy",
                f"welfare after {config.total_turns} turns",
                "per turn",
                "KV hit",
                "cost (credits)",
                "TTFT p50 ms",
                "accuracy",
            ],
            [
                [
                    f"`{r['policy']}`",
                    *ci_cells(r, METRICS),
                ]
                for r in summary
            ],
        )
    )
    lines += [
        f"Ranking by mean final welfare: {' > '.join(f'`{p}`' for p in ranking)}.",
        "",
        "![Fig. 4: cumulative welfare](welfare_fig4.png)",
        "",
    ]
    return "\n".join(lines) + "\n"


def _plot(runs: list[dict[str, Any]], config: WelfareConfig, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    turns = np.arange(1, config.total_turns + 1)
    for policy in config.policies:
        curves = np.array([r["curve"] for r in runs if r["policy"] == policy])
        ax.plot(turns, curves.mean(axis=0), label=policy, linewidth=2.4 if policy == "auction" else 1.2)
        if len(curves) > 1:
            ax.fill_between(turns, curves.min(axis=0), curves.max(axis=0), alpha=0.1)
    ax.set_xlabel("dialogue turns served")
    ax.set_ylabel("cumulative social welfare (credits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
