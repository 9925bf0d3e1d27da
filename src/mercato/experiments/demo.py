"""`mercato demo`: the gateway in front of a heterogeneous fleet, once per policy, over real HTTP.

For each policy, with the same seed and a fresh fleet (so no policy inherits another's KV
caches): five simulated engine servers of four profiles at different prices, the live gateway
in front of them, and a CoQA-like multi-turn workload driven through the gateway by the
official ``openai`` client (mercato's load generator). The table compares policies on what
IEMAS Table 1 reports (KV hit rate, cost, TTFT, accuracy) plus the economics: social welfare,
VCG payments and the hub's surplus (which must be >= 0: weak budget balance).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mercato.engine.server import running_server
from mercato.gateway.core.policies import POLICY_NAMES
from mercato.gateway.live.app import create_app
from mercato.gateway.live.config import AccountingConfig, GatewayConfig, LoggingConfig, PolicyConfig
from mercato.gateway.live.fleet import EngineFleet
from mercato.gateway.live.ledger import SQLiteAccountingStore, remove_ledger
from mercato.reporting import markdown_table, write_csv, write_json
from mercato.workloads import synthetic_dialogues
from mercato.workloads.loadgen import RequestRecord, run_load, summarize

FLEET: tuple[str, ...] = ("qwen3-4b", "qwen3-4b", "qwen3-8b", "llama3-8b", "qwen3-32b")
DEMO_POLICIES: tuple[str, ...] = ("auction", "random", "round_robin", "least_loaded", "cache_aware", "mf")
COLUMNS: tuple[str, ...] = (
    "policy", "requests", "errors", "kv_hit_rate", "mean_cost", "ttft_p50_ms", "ttft_p95_ms", "accuracy",
    "welfare", "payments", "surplus", "nmae_latency", "nmae_cost", "ledger_records", "budget_balanced",
)


@dataclass(frozen=True)
class DemoSettings:
    """Size of the demo run; the defaults finish in about two minutes on two cores."""

    dialogues: int = 24
    turns: int = 6
    concurrency: int = 12
    max_tokens: int = 48
    speed: float = 1.0
    seed: int = 0
    # Gateway slots per backend (the auction's q_i). Default: what each engine really runs at once
    # (12). With fewer (IEMAS's examples use 4) buyers compete for the cheap slots, VCG prices rise
    # above cost, and the auction trades some cache affinity for the capacity limit.
    capacity: int = 12
    policies: tuple[str, ...] = DEMO_POLICIES
    fleet: tuple[str, ...] = FLEET
    out: Path = field(default=Path("results/demo"))

    def __post_init__(self) -> None:
        unknown = [p for p in self.policies if p not in POLICY_NAMES]
        if unknown:
            raise ValueError(f"unknown policies {unknown}; choose from {', '.join(POLICY_NAMES)}")
        if min(self.dialogues, self.turns, self.concurrency, self.max_tokens, self.capacity) < 1:
            raise ValueError("dialogues, turns, concurrency, max_tokens and capacity must all be >= 1")
        if self.speed <= 0:
            raise ValueError(f"speed must be > 0 for a timed demo, got {self.speed}")


def run_policy(policy: str, settings: DemoSettings, on_record: Callable[[RequestRecord], None] | None = None
               ) -> tuple[dict[str, Any], list[RequestRecord]]:
    """One policy on a fresh fleet; returns its summary row and the per-request records."""
    dialogues = synthetic_dialogues("coqa", settings.dialogues, seed=settings.seed, turns=settings.turns)
    db = settings.out / f"ledger-{policy}.sqlite"
    remove_ledger(db)
    store = SQLiteAccountingStore(db)
    try:
        with EngineFleet(settings.fleet, speed=settings.speed, seed=settings.seed) as fleet:
            config = GatewayConfig(backends=fleet.backend_configs(settings.capacity),
                                   policy=PolicyConfig(name=policy, seed=settings.seed),
                                   accounting=AccountingConfig(db=db),
                                   logging=LoggingConfig(access_log=False))  # the demo prints its own table
            app = create_app(config, store=store)
            router = app.state.gateway.router
            with running_server(app) as url:
                records = asyncio.run(run_load(
                    url, dialogues, model="mercato", concurrency=settings.concurrency,
                    max_tokens=settings.max_tokens, seed=settings.seed, run_id=f"demo-{policy}",
                    on_record=on_record))
        ledger = store.summary()
    finally:
        store.close()
    return _row(policy, records, router.snapshot(), ledger), records


def _row(policy: str, records: Sequence[RequestRecord], snapshot: dict[str, Any],
         ledger: dict[str, Any]) -> dict[str, Any]:
    load = summarize(records)
    totals = snapshot["totals"]
    served = max(1, int(totals["requests"]))
    overall = ledger["overall"]
    return {
        "policy": policy,
        "requests": load["requests"],
        "errors": load["errors"],
        "kv_hit_rate": load["kv_hit_rate"],
        "mean_cost": totals["cost"] / served,
        "ttft_p50_ms": load["ttft_p50_ms"],
        "ttft_p95_ms": load["ttft_p95_ms"],
        "accuracy": load["accuracy"],
        "welfare": totals["welfare"],
        "payments": totals["payments"],
        "surplus": totals["surplus"],
        "nmae_latency": snapshot["nmae"]["latency"],
        "nmae_cost": snapshot["nmae"]["cost"],
        "ledger_records": overall["requests"],
        "budget_balanced": bool(ledger["weak_budget_balance"]),
    }


def write_outputs(rows: list[dict[str, Any]], records: dict[str, list[RequestRecord]],
                  settings: DemoSettings) -> list[Path]:
    """summary.csv/json, requests.jsonl, two PNG plots and report.md under ``settings.out``."""
    out = settings.out
    paths = [write_csv(out / "summary.csv", rows, COLUMNS), write_json(out / "summary.json", {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(settings).items()},
        "rows": rows})]
    with (out / "requests.jsonl").open("w") as fh:
        for policy, recs in records.items():
            for r in recs:
                fh.write(json.dumps({"policy": policy, **r.row()}) + "\n")
    paths += [out / "requests.jsonl", _plot_bars(rows, out / "summary.png"),
              _plot_ttft(records, out / "ttft_cdf.png"), _report(rows, settings, out / "report.md")]
    return paths


def _plot_bars(rows: list[dict[str, Any]], path: Path) -> Path:
    metrics = [("kv_hit_rate", "KV hit rate"), ("mean_cost", "mean cost (credits)"),
               ("ttft_p50_ms", "TTFT p50 (ms)"), ("ttft_p95_ms", "TTFT p95 (ms)"), ("accuracy", "accuracy"),
               ("welfare", "social welfare")]
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.5))
    names = [r["policy"] for r in rows]
    colors = ["tab:red" if n == "auction" else "tab:gray" for n in names]
    for ax, (key, label) in zip(axes.ravel(), metrics, strict=True):
        ax.bar(names, [r[key] if r[key] is not None else math.nan for r in rows], color=colors)
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    fig.suptitle("mercato demo: one policy per fresh fleet, same workload and seed")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_ttft(records: dict[str, list[RequestRecord]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for policy, recs in records.items():
        ttft = np.sort([r.ttft_ms for r in recs if r.ttft_ms is not None])
        if ttft.size:
            ax.plot(ttft, np.arange(1, ttft.size + 1) / ttft.size, label=policy,
                    linewidth=2.5 if policy == "auction" else 1.2)
    ax.set_xscale("log")
    ax.set_xlabel("TTFT seen by the client (ms, log scale)")
    ax.set_ylabel("share of requests")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _report(rows: list[dict[str, Any]], settings: DemoSettings, path: Path) -> Path:
    table = markdown_table(COLUMNS, [[_cell(r[c]) for c in COLUMNS] for r in rows])
    text = (
        "# mercato demo\n\n"
        f"Fleet: {', '.join(settings.fleet)} (simulated vLLM engines, 12 sequences each, "
        f"gpu_memory_utilization 0.6, speed {settings.speed:g}; the gateway offers "
        f"{settings.capacity} slots per backend); workload: {settings.dialogues} "
        f"CoQA-like dialogues x {settings.turns} turns, concurrency {settings.concurrency}, "
        f"max_tokens {settings.max_tokens}, seed {settings.seed}. Each policy ran on a fresh fleet "
        "behind the live gateway, driven over HTTP by the openai client.\n\n"
        "KV hit rate: mean of cached/prompt tokens per request (engines' own usage reports). "
        "Cost: IEMAS Eq. 6 in credits (1 credit = 1e-6 USD). TTFT: as seen by the client. "
        "Welfare: buyers' realised value minus cost. Payments: what buyers paid (cost plus VCG "
        "externality); surplus: what the hub kept. NMAE: the router's predictors on the last 20% "
        "of requests.\n\n" + table +
        "\n![summary](summary.png)\n\n![TTFT](ttft_cdf.png)\n")
    path.write_text(text)
    return path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
