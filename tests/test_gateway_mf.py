"""The matrix-factorisation quality router: embedding, prediction, its SGD step, exploration, decisions."""

from __future__ import annotations

import itertools
import string

import numpy as np
import pytest

from mercato.gateway.core.market import BatchContext
from mercato.gateway.core.policies.mf import MatrixFactorisationPolicy
from mercato.gateway.core.predictors import Predictions
from mercato.gateway.core.types import BackendSpec, BuyerReport, Observation, RouteRequest

WORDS = ["".join(p) for p in itertools.product(string.ascii_lowercase, repeat=3)]  # letters only


def request(prompt: str, domain: str = "coqa") -> RouteRequest:
    return RouteRequest(request_id="r", prompt=prompt, prompt_tokens=40, max_tokens=16, session_id="s",
                        turn=1, domain=domain, source="t", buyer="b", report=BuyerReport(), arrival=0.0)


def observation(correct: bool | None, ok: bool = True) -> Observation:
    return Observation(request_id="r", backend="b0", ok=ok, ttft_s=0.1, latency_s=0.2, prompt_tokens=40,
                       cached_tokens=0, completion_tokens=8, text="x", correct=correct)


def spec(i: int, price_input: float, price_output: float) -> BackendSpec:
    return BackendSpec(name=f"b{i}", model="m", capacity=10_000, price_input=price_input,
                       price_cached_input=price_input / 2, price_output=price_output)


def context(requests: list[RouteRequest], specs: list[BackendSpec], seed: int = 0) -> BatchContext:
    n, m = len(requests), len(specs)
    zeros = np.zeros((n, m))
    return BatchContext(requests, specs, np.ones((n, m), dtype=bool), np.full(m, 10_000, dtype=np.int64),
                        np.zeros(m), zeros, Predictions(zeros, zeros, zeros), zeros, zeros,
                        np.random.default_rng(seed))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_embedding_is_a_normalised_bag_of_the_last_64_words_and_the_domain():
    policy = MatrixFactorisationPolicy(2)
    words = list(WORDS[:100])
    base = policy.embed(request(" ".join(words)))
    assert np.linalg.norm(base) == pytest.approx(1.0) and (base >= 0).all()

    def changed(position_from_end: int) -> bool:
        other = list(words)
        other[-position_from_end] = "zzz"
        return not np.array_equal(base, policy.embed(request(" ".join(other))))

    assert changed(1) and changed(50) and changed(64)
    assert not changed(65) and not changed(100)
    assert not np.array_equal(base, policy.embed(request(" ".join(words), "quac")))
    assert np.array_equal(base, policy.embed(request(" ".join(words).upper())))  # case-blind
    # Only the last 600 characters are read: a word that ends 601 characters from the end is not.
    tail = " " + "b" * 599
    assert np.array_equal(policy.embed(request("a" + tail)), policy.embed(request("c" + tail)))
    assert not np.array_equal(policy.embed(request("a" + tail[1:])), policy.embed(request("c" + tail[1:])))


def test_embedding_counts_repeated_words():
    x = MatrixFactorisationPolicy(2).embed(request("go go go"))  # "go" three times, the domain once
    assert sorted(x[x != 0]) == pytest.approx([1 / np.sqrt(10), 3 / np.sqrt(10)])
    short = MatrixFactorisationPolicy(2).embed(request("go"))  # two features: normalised, not halved
    assert sorted(short[short != 0]) == pytest.approx([1 / np.sqrt(2)] * 2)


def test_quality_is_the_logistic_of_the_bilinear_score():
    policy = MatrixFactorisationPolicy(3, seed=4)
    policy.bias[:] = [0.3, -1.2, 2.0]
    x = policy.embed(request("where did the boat sail"))
    expected = sigmoid(policy.bias + policy.models @ (policy.projection.T @ x))
    np.testing.assert_allclose(policy.quality(x), expected, rtol=1e-12)


def test_an_untrained_model_has_no_opinion_and_is_reproducible():
    rng = np.random.default_rng(0)
    policy = MatrixFactorisationPolicy(4, seed=1)
    prompts = [" ".join(rng.choice(WORDS, 12)) for _ in range(100)]
    quality = np.array([policy.quality(policy.embed(request(p))) for p in prompts])
    assert np.abs(quality - 0.5).max() < 0.1
    same, other = MatrixFactorisationPolicy(4, seed=1), MatrixFactorisationPolicy(4, seed=2)
    np.testing.assert_array_equal(same.projection, policy.projection)
    np.testing.assert_array_equal(same.models, policy.models)
    assert not np.array_equal(other.projection, policy.projection)


def loss(policy: MatrixFactorisationPolicy, backend: int, x, y: float, bias, models, projection) -> float:
    """The documented objective: logistic loss of one label plus (l2 / 2) |q_m|^2 + (l2 / 2) |P|^2."""
    p = sigmoid(bias[backend] + models[backend] @ (projection.T @ x))
    bce = -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))
    return float(bce + policy.l2 / 2 * (models[backend] @ models[backend] + (projection**2).sum()))


@pytest.mark.parametrize("correct", [True, False])
def test_one_observation_is_one_gradient_step_on_the_regularised_logistic_loss(correct):
    policy = MatrixFactorisationPolicy(3, dim=4, hash_dim=32, lr=0.5, l2=0.05, seed=2)
    policy.bias[:] = [0.4, -0.3, 0.1]
    req = request("what colour was the boat")
    x, y, b = policy.embed(req), float(correct), 1
    before = (policy.bias.copy(), policy.models.copy(), policy.projection.copy())
    policy.observe(req, b, observation(correct))
    after = (policy.bias, policy.models, policy.projection)
    assert policy.updates == 1
    # Other backends' parameters do not move.
    for j in (0, 2):
        assert policy.bias[j] == before[0][j]
        np.testing.assert_array_equal(policy.models[j], before[1][j])
    # The step is -lr times the gradient: check it along random directions by central differences.
    rng = np.random.default_rng(0)
    step = [(a - o) / -policy.lr for a, o in zip(after, before, strict=True)]
    for _ in range(6):
        d = [np.zeros_like(before[0]), np.zeros_like(before[1]), rng.normal(size=before[2].shape)]
        d[0][b] = rng.normal()
        d[1][b] = rng.normal(size=before[1].shape[1])
        eps = 1e-6
        up = loss(policy, b, x, y, *(o + eps * di for o, di in zip(before, d, strict=True)))
        down = loss(policy, b, x, y, *(o - eps * di for o, di in zip(before, d, strict=True)))
        numeric = (up - down) / (2 * eps)
        analytic = sum(float((s * di).sum()) for s, di in zip(step, d, strict=True))
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_it_learns_which_backend_answers_and_ignores_what_it_cannot_learn_from():
    policy = MatrixFactorisationPolicy(2, seed=0)
    questions = [request(f"what colour was the boat number {w}") for w in WORDS[:40]]
    for _ in range(5):
        for req in questions:
            policy.observe(req, 0, observation(True))
            policy.observe(req, 1, observation(False))
    assert policy.updates == 400
    quality = policy.quality(policy.embed(request("what colour was the boat")))
    assert quality[0] > 0.8 and quality[1] < 0.2
    frozen = (policy.bias.copy(), policy.models.copy(), policy.projection.copy())
    policy.observe(questions[0], 1, observation(None))  # correctness unknown
    policy.observe(questions[0], 1, observation(True, ok=False))  # the request failed
    assert policy.updates == 400
    for a, b in zip(frozen, (policy.bias, policy.models, policy.projection), strict=True):
        np.testing.assert_array_equal(a, b)


def test_decisions_trade_quality_against_relative_list_price():
    # With no exploration: the best quality - cost_weight * (input + output price) / dearest's.
    rng = np.random.default_rng(5)
    for _ in range(20):
        m = int(rng.integers(2, 5))
        specs = [spec(i, rng.uniform(0.001, 0.3), rng.uniform(0.001, 0.6)) for i in range(m)]
        policy = MatrixFactorisationPolicy(m, explore=0.0, cost_weight=float(rng.uniform(0.1, 2.0)),
                                           seed=int(rng.integers(100)))
        policy.bias[:] = rng.normal(0.0, 1.5, m)
        batch = [request(" ".join(rng.choice(WORDS, 6))) for _ in range(5)]
        prices = np.array([s.price_input + s.price_output for s in specs])
        quality = np.stack([policy.quality(policy.embed(r)) for r in batch])
        score = quality - policy.cost_weight * prices / prices.max()
        assert policy.allocate(context(batch, specs)).assignment.tolist() == score.argmax(axis=1).tolist()


def test_exploration_decays_with_the_labels_learned():
    # Backend 0 is clearly better; a request routed by random scores goes to backend 1 half the
    # time, so backend 1's share is explore / (1 + updates / 50) / 2.
    specs = [spec(0, 0.01, 0.02), spec(1, 0.01, 0.02)]
    batch = [request("which way did the river run")] * 4000
    for updates, share in [(0, 0.25), (50, 0.125), (150, 0.0625)]:
        policy = MatrixFactorisationPolicy(2, explore=0.5, cost_weight=0.0)
        policy.bias[:] = [6.0, -6.0]
        policy.updates = updates
        chosen = policy.allocate(context(batch, specs, seed=updates)).assignment
        assert (chosen == 1).mean() == pytest.approx(share, abs=0.025), updates
