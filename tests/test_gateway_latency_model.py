"""The queueing TTFT model: non-negative rates, learned from the load a request actually met."""

from __future__ import annotations

import numpy as np
import pytest

from mercato.gateway.core.features import N_FEATURES, WAIT
from mercato.gateway.core.latency import LATENCY_PRIOR, QueueingLatencyModel, latency_terms, predict_ttft
from mercato.gateway.core.predictors import PredictorBank, PredictorSettings
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


def test_batch_mates_sent_to_one_backend_each_queue_behind_the_earlier_ones():
    specs = [BackendSpec("a", "m", 8, 0.01, 0.005, 0.02)]
    router = Router(specs, "round_robin", RouterSettings())
    decisions = router.route([_request(i) for i in range(3)], now=0.0)
    for d in decisions:
        router.started(d, "a", 0.0)
    assert router.snapshot()["backends"]["a"]["inflight"] == 3
    _, rate = router.predictors.prefill_clock(0)
    # each 800-token prompt is uncached: the clock runs 3 prefills ahead of a new request
    wait = router.market([_request(9)], now=0.0).features[0, 0, WAIT]
    assert wait == pytest.approx(3 * 0.8 * rate)
    assert router.market([_request(9)], now=10.0).features[0, 0, WAIT] == 0.0


def test_a_failed_over_request_gives_its_prefill_back_to_the_clock():
    specs = [BackendSpec("a", "m", 8, 0.01, 0.005, 0.02), BackendSpec("b", "m", 8, 0.01, 0.005, 0.02)]
    router = Router(specs, "round_robin", RouterSettings())
    (decision,) = router.route([_request(0)], now=0.0)
    router.started(decision, "a", 0.0)
    assert router.load.prefill_wait(0.0)[0] > 0
    router.release(decision, "a", 0.0)
    assert router.load.prefill_wait(0.0)[0] == 0.0


def test_the_queueing_model_predicts_a_burst_better_than_the_log_linear_one():
    specs = profile_backends(["qwen3-4b", "qwen3-8b"], max_num_seqs=8)
    nmae = {}
    for model in ("queueing", "log_linear_tree"):
        settings = RouterSettings(predictor=PredictorSettings(latency_model=model))
        cluster = InProcessCluster(specs, "auction", settings=settings, seed=0)
        cluster.run(synthetic_dialogues("hotpotqa", 32, seed=0, turns=3), concurrency=16)
        nmae[model] = cluster.router.quality.nmae(tail=1.0)["latency"]
    assert nmae["queueing"] < 0.7 * nmae["log_linear_tree"]


def test_the_congestion_priced_auction_serves_every_turn_and_stays_budget_balanced():
    specs = profile_backends(["qwen3-4b", "qwen3-4b", "qwen3-8b", "llama3-8b"], max_num_seqs=8)
    cluster = InProcessCluster(specs, "auction", settings=RouterSettings(), seed=0)
    logs = cluster.run(synthetic_dialogues("coqa", 16, seed=0, turns=3), concurrency=16)
    assert len(logs) == 48
    assert all(log.payment >= log.cost - 1e-9 and log.surplus >= -1e-9 for log in logs)
    assert cluster.router.snapshot()["pending"] == 0
    assert float(cluster.router.load.inflight.sum()) == 0.0


def test_engines_of_one_model_share_what_is_learned_about_its_answers():
    specs = [BackendSpec(name, model, 8, 0.01, 0.005, 0.02)
             for name, model in (("a0", "small"), ("a1", "small"), ("b", "big"))]
    bank = PredictorBank(specs)
    x = np.zeros(N_FEATURES)
    for k in range(400):  # only a0 ever answers; it is always right
        bank.learn(0, x, 0, 0.05, 5.0, 10, True)
        x[0] = k % 3  # some spread so the tree may split
    quality = bank.predict(np.zeros((1, 3, N_FEATURES)), np.array([0])).quality[0]
    assert quality[0] == quality[1] > 0.9  # a1 knows what a0 learned about their model
    assert quality[2] == pytest.approx(0.5)  # another model knows nothing yet


def test_a_handful_of_labels_moves_quality_only_a_little():
    bank = PredictorBank([BackendSpec("a", "m", 8, 0.01, 0.005, 0.02)])
    for _ in range(5):
        bank.learn(0, np.zeros(N_FEATURES), 0, 0.05, 5.0, 10, True)
    quality = float(bank.predict(np.zeros((1, 1, N_FEATURES)), np.array([0])).quality[0, 0])
    assert quality == pytest.approx((5 + 10) / (5 + 20))  # 20 pseudo-labels, half of them right


def test_vectorised_prediction_is_the_models_formula():
    rng = np.random.default_rng(3)
    theta = rng.uniform(0.0, 0.2, (5, 4))
    u, w, n = rng.uniform(0, 4, (3, 7, 5))
    expected = np.einsum("nmk,mk->nm", latency_terms(u, w, n), theta)
    np.testing.assert_allclose(predict_ttft(theta, u, w, n), expected, rtol=1e-12)
