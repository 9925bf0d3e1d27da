"""Run-level metrics from a simulation's per-round series (reference definitions unless said).

* drop rate ``1 - successes / generated`` (rejected tasks count as drops); coverage ``admitted /
  generated``; deadline satisfaction ``successes / generated`` (the paper's column, = 1 - drop);
  on-time share ``successes / admitted`` (the share of served tasks that met their deadline);
* median and p95 latency: mean over rounds of the per-round median / 95th percentile of the
  executed tasks' latencies (rounds that executed nothing are skipped);
* utilisation: mean over rounds and tiers of offered load ``sum bundles / capacity`` (may exceed
  1; the paper's column); realised utilisation: the same for the executed load;
* welfare: mean per round of ``sum_success v * exp(-0.005 * latency)`` minus the congestion
  penalty; efficiency: total welfare / total expected value of a value-greedy packing by true
  expected values (a yardstick, not an upper bound);
* price volatility: standard deviation of log-returns of each posted price across rounds,
  averaged over prices (tiers of every pool, or slice prices). Prices sit at the floor 0 for long
  stretches, so returns are taken on ``price + tick`` (``Parameters.price_tick``, 0.01 value
  units), and the first ``burn_in_rounds`` rounds are left out while prices leave their start
  value. The coefficient of variation of prices (the authors' later definition) is reported too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from mercato.economy.config import Parameters

SERIES: tuple[str, ...] = (
    "generated", "admitted", "successes", "rejected_by_governance", "median_latency", "p95_latency",
    "welfare", "benchmark", "offered_utilisation", "realised_utilisation", "bottleneck_rho",
    "revenue", "utility_truthful", "utility_strategic", "tasks_truthful", "tasks_strategic",
)


def price_volatility(prices: NDArray[np.float64], params: Parameters) -> NDArray[np.float64]:
    """Std of log-returns of each column of ``prices`` (rounds x goods) after the burn-in."""
    kept = np.log(prices[params.burn_in_rounds:] + params.price_tick)
    if kept.shape[0] < 3:
        return np.zeros(prices.shape[1])
    return np.diff(kept, axis=0).std(axis=0, ddof=1)


def price_cv(prices: NDArray[np.float64], params: Parameters) -> NDArray[np.float64]:
    """Coefficient of variation of each price column after the burn-in (0 for a price stuck at 0)."""
    kept = prices[params.burn_in_rounds:]
    if kept.shape[0] == 0:
        return np.zeros(prices.shape[1])
    mean = kept.mean(axis=0)
    std = kept.std(axis=0)
    return np.divide(std, mean, out=np.zeros_like(mean), where=mean > 0)


def summarize(series: Mapping[str, NDArray[np.float64]], prices: Sequence[NDArray[np.float64]],
              trust: NDArray[np.float64], params: Parameters) -> dict[str, float]:
    """The run's metrics (floats; NaN where undefined, e.g. volatility of a priceless rule)."""
    generated = float(series["generated"].sum())
    admitted = float(series["admitted"].sum())
    successes = float(series["successes"].sum())
    benchmark = float(series["benchmark"].sum())
    priced = [p for p in prices if p.shape[1] > 0]
    vol = np.concatenate([price_volatility(p, params) for p in priced]) if priced else np.zeros(0)
    cv = np.concatenate([price_cv(p, params) for p in priced]) if priced else np.zeros(0)
    return {
        "median_latency": _nanmean(series["median_latency"]),
        "p95_latency": _nanmean(series["p95_latency"]),
        "drop_rate": 1.0 - _ratio(successes, generated),
        "coverage": _ratio(admitted, generated),
        "deadline_satisfaction": _ratio(successes, generated),
        "on_time": _ratio(successes, admitted),
        "utilisation": float(series["offered_utilisation"].mean()),
        "realised_utilisation": float(series["realised_utilisation"].mean()),
        "volatility": float(vol.mean()) if vol.size else float("nan"),
        "price_cv": float(cv.mean()) if cv.size else float("nan"),
        "welfare": float(series["welfare"].mean()),
        "efficiency": _ratio(float(series["welfare"].sum()), benchmark),
        "revenue": float(series["revenue"].mean()),
        "utility_truthful": _ratio(float(series["utility_truthful"].sum()),
                                   float(series["tasks_truthful"].sum())),
        "utility_strategic": _ratio(float(series["utility_strategic"].sum()),
                                    float(series["tasks_strategic"].sum())),
        "governance_rejections": _ratio(float(series["rejected_by_governance"].sum()), generated),
        "mean_trust": float(trust.mean()),
    }


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def _nanmean(x: NDArray[np.float64]) -> float:
    finite = x[np.isfinite(x)]
    return float(finite.mean()) if finite.size else float("nan")
