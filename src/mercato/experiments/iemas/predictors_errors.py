"""How Fig. 3 scores predictions against outcomes: two NMAEs and the per-turn curves.

Every request's predictions were made for the backend that served it, before its outcome was
learned. Two NMAEs are reported, because the paper does not say which it computed:

* per request, on the last 20% of requests in finishing order (the Router's own
  :class:`~mercato.gateway.core.quality.QualityTracker`). For accuracy this compares a probability with
  a 0/1 outcome, so even a perfect predictor scores about ``2p(1 - p) / p``; the "oracle" column
  gives that floor, using the engine's true probability for the serving model and domain;
* per turn, between the mean predicted and the mean observed value of each of the 20 turns (the
  curves of Fig. 3), which is the reading under which an accuracy NMAE of 0.069 is attainable.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mercato.engine import get_profile
from mercato.experiments.iemas.common import interval
from mercato.experiments.iemas.predictors_config import PredictorsConfig
from mercato.gateway.core.types import BackendSpec
from mercato.gateway.sim.cluster import RequestLog

TARGETS: tuple[str, ...] = ("latency", "cost", "accuracy")


def _nmae(pred: NDArray[np.float64], obs: NDArray[np.float64]) -> float:
    denom = float(np.abs(obs).sum())
    return float(np.abs(pred - obs).sum() / denom) if denom > 0 else math.nan


def _tail(a: NDArray[np.float64], tail: float) -> NDArray[np.float64]:
    return a[int(len(a) * (1.0 - tail)) :] if len(a) >= 5 else a


def prediction_errors(
    logs: list[RequestLog], specs: list[BackendSpec], config: PredictorsConfig
) -> dict[str, Any]:
    """Per-request tail NMAE, per-turn NMAE and the per-turn mean curves, for each target."""
    profile = {s.name: get_profile(s.profile or s.model) for s in specs}
    judged = [x for x in logs if x.correct is not None]
    pairs = {
        "latency": (
            np.array([x.predicted_latency_s for x in logs]),
            np.array([x.ttft_s for x in logs]),
            np.array([x.turn for x in logs]),
        ),
        "cost": (
            np.array([x.predicted_cost for x in logs]),
            np.array([x.cost for x in logs]),
            np.array([x.turn for x in logs]),
        ),
        "accuracy": (
            np.array([x.predicted_quality for x in judged]),
            np.array([float(x.correct) for x in judged]),
            np.array([x.turn for x in judged]),
        ),
    }
    out: dict[str, Any] = {}
    for target, (pred, obs, turn) in pairs.items():
        out[f"nmae_{target}"] = _nmae(_tail(pred, config.tail), _tail(obs, config.tail))
        turns = np.arange(1, config.turns + 1)
        mean_pred = np.array([pred[turn == t].mean() if (turn == t).any() else np.nan for t in turns])
        mean_obs = np.array([obs[turn == t].mean() if (turn == t).any() else np.nan for t in turns])
        keep = np.isfinite(mean_pred) & np.isfinite(mean_obs)
        out[f"turn_nmae_{target}"] = _nmae(mean_pred[keep], mean_obs[keep])
        out[f"curve_pred_{target}"] = mean_pred.tolist()
        out[f"curve_obs_{target}"] = mean_obs.tolist()
    oracle = np.array([profile[x.backend].quality_for(x.domain) for x in judged])
    out["nmae_accuracy_oracle"] = _nmae(_tail(oracle, config.tail), _tail(pairs["accuracy"][1], config.tail))
    return out


def curves_over_seeds(
    runs: list[dict[str, Any]], config: PredictorsConfig, seed: int
) -> list[dict[str, Any]]:
    """Per variant, target and turn: mean over seeds of the predicted and observed per-turn means."""
    rows = []
    for variant in config.variants:
        mine = [r for r in runs if r["variant"] == variant]
        for target in TARGETS:
            for t in range(config.turns):
                row: dict[str, Any] = {"variant": variant, "target": target, "turn": t + 1}
                for kind in ("pred", "obs"):
                    est = interval(
                        (
                            r[f"curve_{kind}_{target}"][t]
                            for r in mine
                            if math.isfinite(r[f"curve_{kind}_{target}"][t])
                        ),
                        seed,
                    )
                    row[kind], row[f"{kind}_lo"], row[f"{kind}_hi"] = est.mean, est.low, est.high
                rows.append(row)
    return rows
