"""Which parts of the auction matter: its variants on the virtual clock, beside cache_aware.

The same workloads as `mercato bench routing`, in-process and deterministic (seconds, not
minutes), so that each candidate cause of the gap to the cache-aware rule is measured alone:

- ``auction``: the default (log-TTFT least squares plus a residual tree; no congestion price);
- ``+queueing``: TTFT from the non-negative queueing model, learned from the load each request
  met (:mod:`mercato.gateway.core.latency`);
- ``+congestion``: the k-th request a backend takes in a round pays for its own queueing
  (:mod:`mercato.mechanisms.congestion`), with the default predictor;
- ``+queueing+congestion``: both;
- ``cache_aware`` and ``round_robin``: the production rules, for reference.

TTFT here is measured at the engine (arrival to first token), without the micro-batch wait.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mercato.bench.routing import FLEETS, RoutingSettings, workload_dialogues
from mercato.gateway.core.predictors import PredictorSettings
from mercato.gateway.core.router import RouterSettings
from mercato.gateway.sim.cluster import InProcessCluster, profile_backends

_QUEUEING = PredictorSettings(latency_model="queueing")
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "auction": ("auction", {}),
    "auction+queueing": ("auction", {"predictor": _QUEUEING}),
    "auction+congestion": ("auction", {"congestion": True}),
    "auction+queueing+congestion": ("auction", {"predictor": _QUEUEING, "congestion": True}),
    "cache_aware": ("cache_aware", {}),
    "round_robin": ("round_robin", {}),
}


def run_variant(variant: str, fleet: str, workload: str, settings: RoutingSettings) -> dict[str, Any]:
    """One variant on one workload: KV hit, TTFT p50/p95, mean cost, accuracy, welfare."""
    policy, knobs = VARIANTS[variant]
    specs = profile_backends(list(FLEETS[fleet]), max_num_seqs=settings.max_num_seqs)
    seed = settings.seed
    cluster = InProcessCluster(specs, policy, settings=RouterSettings(seed=seed, **knobs), seed=seed)
    logs = cluster.run(workload_dialogues(workload, settings), concurrency=settings.concurrency)
    ttft = np.array([log.ttft_s for log in logs]) * 1e3
    return {"fleet": fleet, "workload": workload, "variant": variant,
            "kv_hit": float(np.mean([log.cached_tokens / max(1, log.prompt_tokens) for log in logs])),
            "ttft_p50_ms": float(np.percentile(ttft, 50)), "ttft_p95_ms": float(np.percentile(ttft, 95)),
            "mean_cost": float(np.mean([log.cost for log in logs])),
            "accuracy": float(np.mean([bool(log.correct) for log in logs])),
            "welfare": float(cluster.router.snapshot()["totals"]["welfare"])}


def run(settings: RoutingSettings, on_row: Callable[[dict[str, Any]], None] | None = None
        ) -> list[dict[str, Any]]:
    """Every variant on every fleet and workload of ``settings``."""
    rows = []
    for fleet in settings.fleets:
        for workload in settings.workloads:
            for variant in VARIANTS:
                row = run_variant(variant, fleet, workload, settings)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows
