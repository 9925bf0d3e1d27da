"""The queueing TTFT model: non-negative rates, learned from the load a request actually met."""

from __future__ import annotations

import numpy as np
import pytest

from mercato.gateway.core.latency import LATENCY_PRIOR, QueueingLatencyModel, latency_terms
from mercato.gateway.core.predictors import PredictorSettings
from mercato.gateway.core.router import Router, RouterSettings
from mercato.gateway.core.types import BackendSpec, BuyerReport, RouteRequest
from mercato.gateway.sim.cluster import InProcessCluster, profile_backends
from mercato.workloads import synthetic_dialogues


def test_unfitted_model_predicts_its_prior():
    np.testing.assert_allclose(QueueingLatencyModel().theta, LATENCY_PRIOR)


def test_it_recovers_the_rates_of_a_known_engine():
    rng = np.random.default_rng(0)
    truth = np.array([0.01, 0.2, 0.15, 0.003])
    model = QueueingLatencyModel()
    for _ in range(400):
        u, b, n = rng.uniform(0, 2), rng.uniform(0, 3), rng.integers(0, 12)
        model.learn(u, b, n, float(latency_terms(np.array(u), np.array(b), np.array(n)) @ truth))
    np.testing.assert_allclose(model.theta, truth, atol=2e-3)


def test_a_workload_that_makes_load_look_helpful_never_learns_a_negative_rate():
    # Late turns arrive under load but are cached, so raw data says "more load, faster answers";
    # the model must not learn that load lowers TTFT.
    model = QueueingLatencyModel()
    for n in range(12):
        model.learn(0.8 if n < 2 else 0.02, 0.0, float(n), 0.25 - 0.02 * n)
    assert (model.theta >= 0).all()
    low, high = (float(latency_terms(np.array(0.5), np.array(0.0), np.array(k)) @ model.theta)
                 for k in (0, 10))
    assert high >= low


def test_unknown_latency_model_is_refused():
    with pytest.raises(ValueError, match="latency_model"):
        PredictorSettings(latency_model="magic")


def _request(i: int, prompt_tokens: int = 800) -> RouteRequest:
    return RouteRequest(f"r{i}", f"context {i} " * 100, prompt_tokens, 16, f"s{i}", 1, "coqa", None, "b",
                        BuyerReport(bid=1.0, delta=0.2), 0.0)


def test_batch_mates_sent_to_one_backend_each_meet_the_earlier_ones_backlog():
    specs = [BackendSpec("a", "m", 8, 0.01, 0.005, 0.02)]
    settings = RouterSettings(predictor=PredictorSettings(latency_model="queueing"))
    router = Router(specs, "round_robin", settings)
    decisions = router.route([_request(i) for i in range(3)], now=0.0)
    for d in decisions:
        router.started(d, "a", 0.0)
    snap = router.snapshot()["backends"]["a"]
    assert snap["inflight"] == 3
    assert router.load.backlog[0] == pytest.approx(3 * 0.8)


def test_the_congestion_priced_auction_serves_every_turn_and_stays_budget_balanced():
    specs = profile_backends(["qwen3-4b", "qwen3-4b", "qwen3-8b", "llama3-8b"], max_num_seqs=8)
    settings = RouterSettings(predictor=PredictorSettings(latency_model="queueing"), congestion=True)
    cluster = InProcessCluster(specs, "auction", settings=settings, seed=0)
    logs = cluster.run(synthetic_dialogues("coqa", 16, seed=0, turns=3), concurrency=16)
    assert len(logs) == 48
    assert all(log.payment >= log.cost - 1e-9 and log.surplus >= -1e-9 for log in logs)
    assert cluster.router.snapshot()["pending"] == 0
    assert float(cluster.router.load.backlog.sum()) == pytest.approx(0.0, abs=1e-9)
