"""The latency predictor's recursive least squares stays finite over a long-running gateway's life."""

from __future__ import annotations

import math

import numpy as np

from mercato.gateway.core.predictors import BackendPredictor, PredictorSettings
from mercato.gateway.sim.cluster import profile_backends


def test_rls_stays_finite_and_accurate_over_100k_updates():
    # in-flight and utilisation (in-flight / 12) are collinear, so one direction is never excited:
    # without a bound, forgetting grows its variance as 0.99^-n and overflows to NaN near n = 70k.
    predictor = BackendPredictor(profile_backends(["qwen3-4b"])[0], PredictorSettings())
    rng = np.random.default_rng(0)
    for _ in range(100_000):
        inflight = float(rng.integers(0, 24))
        z = np.array([1.0, rng.uniform(0.0, 2.0), inflight, inflight / 12.0])
        predictor._rls_update(z, math.log(0.05 + 0.2 * z[1] + 0.02 * inflight))
    assert np.isfinite(predictor.cov).all() and np.isfinite(predictor.theta).all()
    assert np.trace(predictor.cov) <= 1e6 * (1 + 1e-9)
    z = np.array([1.0, 1.0, 6.0, 0.5])
    assert abs(math.exp(float(z @ predictor.theta)) - (0.05 + 0.2 + 0.12)) < 0.05
