"""Which parts of the auction matter: the default with each part taken out, beside the rules.

The same workloads as `mercato bench routing`, in-process and deterministic (seconds, not
minutes), so that each part of the auction is measured alone:

- ``auction``: the default: TTFT from the queueing model on the backends' prefill clocks, each
  round's own queueing priced (congestion), every request served inside the auction, quality
  pooled per model with 20 pseudo-labels;
- ``-congestion``: every slot of a backend looks alike within a round;
- ``-queueing``: TTFT from log-TTFT least squares plus a residual tree (no prefill clock);
- ``-serve_all``: only positive-welfare pairs enter the auction, the rest fall back unpaid;
- ``-quality_prior``: quality leaves with the Laplace prior of 2 pseudo-labels;
- ``iemas``: all four taken out (the auction before issue 13);
- ``K=100``, ``K=300``: the default auction for buyers who value waiting 10x and 3.3x less
  (``valuation.latency_penalty_per_s``; 100 was the default before issue 13);
- ``cache_aware`` and ``round_robin``: the production rules, for reference.

TTFT here is measured at the engine (arrival to first token), without the micro-batch wait.
Welfare is taken at the default valuation for every variant, as in the live cells.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mercato.bench.routing import FLEETS, RoutingSettings, workload_dialogues
from mercato.gateway.core.policies import Policy
from mercato.gateway.core.policies.auction import AuctionPolicy
from mercato.gateway.core.predictors import PredictorSettings
from mercato.gateway.core.router import RouterSettings
from mercato.gateway.core.valuation import ValuationSettings, realised_value
from mercato.gateway.sim.cluster import InProcessCluster, profile_backends

_IEMAS_PREDICTOR = PredictorSettings(latency_model="log_linear_tree", quality_prior_weight=2.0)
VALUATION = ValuationSettings()
# variant -> (policy, serve_all, RouterSettings keywords)
VARIANTS: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "auction": ("auction", True, {}),
    "auction-congestion": ("auction", True, {"congestion": False}),
    "auction-queueing": ("auction", True, {"predictor": PredictorSettings(latency_model="log_linear_tree")}),
    "auction-serve_all": ("auction", False, {}),
    "auction-quality_prior": ("auction", True, {"predictor": PredictorSettings(quality_prior_weight=2.0)}),
    "iemas": ("auction", False, {"predictor": _IEMAS_PREDICTOR, "congestion": False}),
    "K=100": ("auction", True, {"valuation": ValuationSettings(latency_penalty_per_s=100.0)}),
    "K=300": ("auction", True, {"valuation": ValuationSettings(latency_penalty_per_s=300.0)}),
    "cache_aware": ("cache_aware", True, {}),
    "round_robin": ("round_robin", True, {}),
}


def run_variant(variant: str, fleet: str, workload: str, settings: RoutingSettings) -> dict[str, Any]:
    """One variant on one workload: KV hit, TTFT p50/p95, mean cost, accuracy, welfare."""
    name, serve_all, knobs = VARIANTS[variant]
    specs = profile_backends(list(FLEETS[fleet]), max_num_seqs=settings.max_num_seqs)
    seed = settings.seed
    policy: str | Policy = AuctionPolicy(serve_all=False) if not serve_all else name
    cluster = InProcessCluster(specs, policy, settings=RouterSettings(seed=seed, **knobs), seed=seed)
    logs = cluster.run(workload_dialogues(workload, settings), concurrency=settings.concurrency)
    ttft = np.array([log.ttft_s for log in logs]) * 1e3
    return {"fleet": fleet, "workload": workload, "variant": variant,
            "kv_hit": float(np.mean([log.cached_tokens / max(1, log.prompt_tokens) for log in logs])),
            "ttft_p50_ms": float(np.percentile(ttft, 50)), "ttft_p95_ms": float(np.percentile(ttft, 95)),
            "mean_cost": float(np.mean([log.cost for log in logs])),
            "accuracy": float(np.mean([bool(log.correct) for log in logs])),
            "welfare": sum(realised_value(1.0, 0.5, log.correct, log.ttft_s, VALUATION, 0.5) - log.cost
                           for log in logs)}


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
