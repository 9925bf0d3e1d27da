"""The live check: a small Table 1 on real llama.cpp servers behind the live gateway, over HTTP.

Three ``llama-server`` processes (SmolLM2-135M on one CPU thread each, prompt cache on,
:mod:`mercato.engine.real`) sit behind the FastAPI gateway; mercato's load generator drives
CoQA-like dialogues through it with the official ``openai`` client, once per policy and seed, on
freshly started servers (no policy inherits another's caches). KV hit rate comes from the servers'
own ``cached_tokens``; TTFT is measured by the client; cost is Eq. 6 at the calibrated SmolLM2
profile's prices (:func:`mercato.engine.calibration.measured_profile`); accuracy is ROUGE-L >= 0.3
on the reply's last line (the tiny model answers poorly: it is here for time and cache behaviour).

The same workload also runs on the simulator, with engines of that calibrated profile, so that
the policies' ordering can be compared between the simulated and the real engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from mercato.engine.calibration import KV_BYTES_PER_TOKEN, WEIGHTS_BYTES, measured_profile
from mercato.engine.real import CTX_PER_SLOT, MODEL_NAME, RealEngine, model_path, server_binary
from mercato.engine.server import running_server
from mercato.experiments.iemas.common import (
    Options,
    Section,
    Stopwatch,
    all_keys,
    ci_bars,
    ci_cells,
    parallel_map,
    request_metrics,
    save_figure,
    summarise,
    with_ci,
)
from mercato.experiments.iemas.paper import CLAIMS
from mercato.gateway.core.types import BackendSpec
from mercato.gateway.live.app import create_app
from mercato.gateway.live.config import (
    AccountingConfig,
    BackendConfig,
    GatewayConfig,
    LoggingConfig,
    PolicyConfig,
    Prices,
)
from mercato.gateway.live.ledger import SQLiteAccountingStore
from mercato.gateway.sim.cluster import InProcessCluster
from mercato.reporting import markdown_table, progress, write_csv
from mercato.workloads import synthetic_dialogues
from mercato.workloads.loadgen import RequestRecord, run_load

METRICS: tuple[str, ...] = (
    "kv_hit_rate",
    "mean_cost",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "accuracy",
    "errors",
    "paid_share",
    "busiest_share",
)
ORDERED: tuple[tuple[str, bool], ...] = (("kv_hit_rate", False), ("mean_cost", True), ("ttft_p50_ms", True))


class EngineUnavailable(RuntimeError):
    """The real engine is not built or its weights are missing (the message says what to run)."""


def unavailable_reason() -> str | None:
    """Why the real engine cannot run here; None when it can."""
    if server_binary() is None:
        return "llama-server is not built: run `mercato engine real build` (about 12 minutes, once)"
    try:
        model_path()
    except FileNotFoundError as err:
        return str(err)
    return None


@dataclass(frozen=True)
class LiveConfig:
    """Dialogues x turns on ``servers`` llama.cpp servers with ``slots`` parallel slots each."""

    dialogues: int = 8
    turns: int = 6
    servers: int = 3
    slots: int = 3
    max_tokens: int = 24
    policies: tuple[str, ...] = ("auction", "cache_aware", "round_robin")

    def __post_init__(self) -> None:
        if min(self.dialogues, self.turns, self.servers, self.slots, self.max_tokens) < 1:
            raise ValueError("dialogues, turns, servers, slots and max_tokens must be >= 1")
        if not self.policies:
            raise ValueError("give at least one policy")


QUICK = LiveConfig(
    dialogues=3, turns=2, servers=2, slots=1, max_tokens=8, policies=("auction", "round_robin")
)


def _prices() -> Prices:
    p = measured_profile()
    return Prices(input=p.price_input, cached_input=p.price_cached_input, output=p.price_output)


def _cost(r: RequestRecord, prices: Prices) -> float:
    prompt, cached = r.prompt_tokens or 0, r.cached_tokens or 0
    return (
        prices.input * (prompt - cached)
        + prices.cached_input * cached
        + prices.output * (r.completion_tokens or 0)
    )


def run_real(policy: str, seed: int, config: LiveConfig, workdir: Path) -> dict[str, Any]:
    """One policy on fresh servers: its metrics row, with the ledger's priced share and backend mix."""
    prices = _prices()
    dialogues = synthetic_dialogues("coqa", config.dialogues, seed, turns=config.turns)
    db = workdir / f"ledger-{policy}-{seed}.sqlite"
    store = SQLiteAccountingStore(db)
    with contextlib.ExitStack() as stack:
        stack.callback(store.close)
        engines = [stack.enter_context(RealEngine.start(slots=config.slots)) for _ in range(config.servers)]
        backends = [
            BackendConfig(
                name=f"smollm2-{k}",
                url=f"{e.url}/v1",
                model=MODEL_NAME,
                capacity=config.slots,
                prices=prices,
                forward_extension=False,
            )
            for k, e in enumerate(engines)
        ]
        gateway = GatewayConfig(
            backends=backends,
            policy=PolicyConfig(name=policy, seed=seed),
            accounting=AccountingConfig(db=db),
            logging=LoggingConfig(access_log=False),  # the report has the numbers; no line per request
        )
        app = create_app(gateway, store=store)
        with running_server(app) as url:
            records = asyncio.run(
                run_load(
                    url,
                    dialogues,
                    model="mercato",
                    concurrency=config.dialogues,
                    max_tokens=config.max_tokens,
                    seed=seed,
                    run_id=f"live-{policy}-{seed}",
                )
            )
        ledger = store.summary()
    ok = [r for r in records if r.error is None]
    ttft = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    hits = [r.cached_tokens / r.prompt_tokens for r in ok if r.cached_tokens is not None and r.prompt_tokens]
    judged = [r.correct for r in ok if r.correct is not None]
    served = max(1, int(ledger["overall"]["requests"]))
    return {
        "engine": "real",
        "policy": policy,
        "seed": seed,
        "requests": float(len(records)),
        "errors": float(len(records) - len(ok)),
        "kv_hit_rate": float(np.mean(hits)) if hits else float("nan"),
        "mean_cost": float(np.mean([_cost(r, prices) for r in ok])) if ok else float("nan"),
        "ttft_p50_ms": float(np.percentile(ttft, 50)) if ttft else float("nan"),
        "ttft_p95_ms": float(np.percentile(ttft, 95)) if ttft else float("nan"),
        "accuracy": float(np.mean(judged)) if judged else float("nan"),
        "paid_share": ledger["overall"]["paid_requests"] / served,
        "busiest_share": max(b["requests"] for b in ledger["backends"].values()) / served,
    }


def run_simulated(job: tuple[str, int, LiveConfig]) -> dict[str, Any]:
    """The same workload on the simulator, engines of the calibrated SmolLM2 profile."""
    policy, seed, config = job
    profile = measured_profile()
    prices = _prices()
    specs = [
        BackendSpec(
            name=f"smollm2-{k}",
            model=MODEL_NAME,
            capacity=config.slots,
            price_input=prices.input,
            price_cached_input=prices.cached_input,
            price_output=prices.output,
        )
        for k in range(config.servers)
    ]
    # KV budget of `slots` contexts of CTX_PER_SLOT tokens, as llama-server is started with.
    memory = config.slots * CTX_PER_SLOT * KV_BYTES_PER_TOKEN + WEIGHTS_BYTES
    cluster = InProcessCluster(
        specs,
        policy,
        seed=seed,
        gpu_memory_utilization=min(1.0, memory / profile.gpu.memory_bytes + 1e-9),
        profiles={s.name: profile for s in specs},
    )
    logs = cluster.run(
        synthetic_dialogues("coqa", config.dialogues, seed, turns=config.turns),
        concurrency=config.dialogues,
        max_tokens=config.max_tokens,
    )
    busiest = max(Counter(x.backend for x in logs).values()) / len(logs)
    return {
        "engine": "simulated",
        "policy": policy,
        "seed": seed,
        "errors": 0.0,
        "busiest_share": busiest,
        **request_metrics(logs),
    }


def run(options: Options, config: LiveConfig | None = None) -> Section:
    """Real runs (servers started here) and simulated twins; raises EngineUnavailable when it cannot run."""
    reason = unavailable_reason()
    if reason is not None:
        raise EngineUnavailable(reason)
    config = config or (QUICK if options.quick else LiveConfig())
    clock = Stopwatch()
    runs = []
    with tempfile.TemporaryDirectory(prefix="mercato-live-") as tmp, progress() as bar:
        task = bar.add_task(
            "live (real llama.cpp)", total=len(config.policies) * options.seeds, visible=options.show_progress
        )
        for seed in options.seed_list:
            for policy in config.policies:
                runs.append(run_real(policy, seed, config, Path(tmp)))
                bar.advance(task)
    runs += parallel_map(
        run_simulated,
        [(p, s, config) for p in config.policies for s in options.seed_list],
        options,
        "live (simulated twin)",
    )
    summary = summarise(runs, ("engine", "policy"), METRICS, options.seed)
    orders = {engine: _orders(summary, engine) for engine in ("real", "simulated")}
    agree = {m: orders["real"][m] == orders["simulated"][m] for m, _ in ORDERED}
    out = options.out
    files = [
        write_csv(out / "live_runs.csv", runs, all_keys(runs)),
        write_csv(out / "live_summary.csv", summary),
        _plot(summary, config, out / "live.png"),
    ]
    console = [
        {
            "engine": r["engine"],
            "policy": r["policy"],
            "KV hit": r["kv_hit_rate"],
            "cost": r["mean_cost"],
            "TTFT p50 ms": r["ttft_p50_ms"],
            "TTFT p95 ms": r["ttft_p95_ms"],
            "accuracy": r["accuracy"],
            "errors": r["errors"],
            "priced": r["paid_share"],
            "busiest server": r["busiest_share"],
        }
        for r in summary
    ]
    return Section(
        "live",
        "Live check: real llama.cpp servers behind the gateway",
        _markdown(summary, orders, agree, config, options),
        {"config": vars(config), "summary": summary, "orders": orders, "orders_agree": agree},
        files=[str(f) for f in files],
        tables=[("Live check: real engine vs simulator (mean over seeds)", console, list(console[0]))],
    ).save(out, clock.seconds)


def unavailable_section(reason: str) -> Section:
    """What ``all`` reports when the real engine cannot run here."""
    text = (
        "## Live check: real llama.cpp servers behind the gateway\n\n"
        f"**Skipped:** {reason}. Build it and run `mercato experiment iemas live`.\n"
    )
    return Section(
        "live", "Live check: real llama.cpp servers behind the gateway", text, {"skipped": reason}, ok=False
    )


def _orders(summary: list[dict[str, Any]], engine: str) -> dict[str, list[str]]:
    rows = [r for r in summary if r["engine"] == engine]
    return {
        m: [r["policy"] for r in sorted(rows, key=lambda r: r[m] if low else -r[m])] for m, low in ORDERED
    }


def _markdown(
    summary: list[dict[str, Any]],
    orders: dict[str, dict[str, list[str]]],
    agree: dict[str, bool],
    config: LiveConfig,
    options: Options,
) -> str:
    lines = [
        "## Live check: real llama.cpp servers behind the gateway",
        "",
        "**What it tests.** Whether what the simulator shows about the policies also happens on a real "
        "inference server with a real prompt cache, driven over HTTP through the live gateway.",
        "",
        f"**Paper.** {CLAIMS['live']}",
        "",
        f"**Setup.** {config.servers} `llama-server` processes (SmolLM2-135M-Instruct Q4_1, one CPU thread, "
        f"{config.slots} slots of {CTX_PER_SLOT} tokens, prompt cache on) behind the gateway; "
        f"{config.dialogues} CoQA-like dialogues x {config.turns} turns, all in flight, max_tokens "
        f"{config.max_tokens}, temperature 0; fresh servers for every policy and seed. KV hit: the servers' "
        "own cached_tokens / prompt_tokens per request. TTFT: measured by the client. Cost: Eq. 6 at the "
        "calibrated SmolLM2 prices. Simulated twin: the same workload in-process on engines of the "
        "calibrated SmolLM2 profile with the same slots and KV budget. Priced: share of requests the "
        "auction matched (the rest fell back unpaid); busiest server: its share of all requests. Mean "
        "over seeds [95% BCa interval]. Wall-clock timings on a shared 2-core machine: noisy.",
        "",
    ]
    if options.quick:
        lines += ["*Reduced size (--quick): not the full experiment.*", ""]
    lines.append(
        markdown_table(
            [
                "engine",
                "policy",
                "KV hit",
                "cost (credits)",
                "TTFT p50 ms",
                "TTFT p95 ms",
                "accuracy",
                "priced share",
                "busiest server share",
                "errors",
            ],
            [
                [
                    r["engine"],
                    f"`{r['policy']}`",
                    *ci_cells(r, ("kv_hit_rate", "mean_cost", "ttft_p50_ms", "ttft_p95_ms", "accuracy")),
                    with_ci(r, "paid_share", 2),
                    with_ci(r, "busiest_share", 2),
                    with_ci(r, "errors"),
                ]
                for r in summary
            ],
        )
    )
    rows = [
        [
            m,
            " > ".join(orders["real"][m]),
            " > ".join(orders["simulated"][m]),
            "yes" if agree[m] else "**no**",
        ]
        for m, _ in ORDERED
    ]
    lines += [
        "Policy orderings, best first:",
        "",
        markdown_table(["metric", "real engine", "simulator", "same order"], rows),
        "![live check](live.png)",
        "",
    ]
    return "\n".join(lines) + "\n"


def _plot(summary: list[dict[str, Any]], config: LiveConfig, path: Path) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.0))
    x = np.arange(len(config.policies))
    for ax, (m, label) in zip(
        axes,
        (("kv_hit_rate", "KV hit rate"), ("mean_cost", "cost (credits)"), ("ttft_p50_ms", "TTFT p50 (ms)")),
        strict=True,
    ):
        for k, engine in enumerate(("real", "simulated")):
            rows = {r["policy"]: r for r in summary if r["engine"] == engine}
            mean, err = ci_bars([rows[p] for p in config.policies], m)
            ax.bar(x + (k - 0.5) * 0.38, mean, 0.38, yerr=err, capsize=2, label=engine)
        ax.set_xticks(x, config.policies, fontsize=8)
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)
