"""The kNN quality router (stand-in for IEMAS's learned baselines): embedding, learning, registration."""

from __future__ import annotations

import numpy as np
import pytest

from mercato.engine.chat import render_chat
from mercato.gateway.core.market import BatchContext
from mercato.gateway.core.policies import POLICY_NAMES, make_policy
from mercato.gateway.core.policies.knn import KnnQualityPolicy, hashed_embedding, last_user_message
from mercato.gateway.core.predictors import Predictions
from mercato.gateway.core.types import BackendSpec, BuyerReport, Observation, RouteRequest
from mercato.gateway.sim.cluster import InProcessCluster, profile_backends
from mercato.workloads import synthetic_dialogues

SPECS = [
    BackendSpec(
        name=f"b{i}", model="m", capacity=4, price_input=0.05, price_cached_input=0.025, price_output=0.1
    )
    for i in range(2)
]


def request(i: int, question: str, domain: str = "coqa") -> RouteRequest:
    prompt = render_chat([{"role": "system", "content": "story"}, {"role": "user", "content": question}])
    return RouteRequest(
        request_id=f"r{i}",
        prompt=prompt,
        prompt_tokens=40,
        max_tokens=16,
        session_id=f"s{i}",
        turn=1,
        domain=domain,
        source="t",
        buyer="b",
        report=BuyerReport(),
        arrival=0.0,
    )


def context(requests: list[RouteRequest], capacity: int = 4,
            specs: list[BackendSpec] = SPECS) -> BatchContext:
    n, m = len(requests), len(specs)
    zeros = np.zeros((n, m))
    return BatchContext(
        requests,
        specs,
        np.ones((n, m), dtype=bool),
        np.full(m, capacity, dtype=np.int64),
        np.zeros(m),
        zeros,
        Predictions(zeros, zeros, zeros),
        zeros,
        zeros,
        np.random.default_rng(0),
    )


def observation(req: RouteRequest, backend: int, correct: bool) -> Observation:
    return Observation(
        request_id=req.request_id,
        backend=f"b{backend}",
        ok=True,
        ttft_s=0.1,
        latency_s=0.2,
        prompt_tokens=40,
        cached_tokens=0,
        completion_tokens=8,
        text="x",
        correct=correct,
    )


def test_registered_as_a_policy():
    assert "knn" in POLICY_NAMES
    assert isinstance(make_policy("knn", 3), KnnQualityPolicy)
    with pytest.raises(ValueError, match="k, dim and memory"):
        KnnQualityPolicy(2, k=0)


def test_embedding_is_unit_norm_and_reads_the_last_question():
    prompt = render_chat(
        [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "Where did the cat go?"},
        ]
    )
    assert last_user_message(prompt).startswith("Where did the cat go?")
    x = hashed_embedding(last_user_message(prompt), "coqa", 64)
    assert np.linalg.norm(x) == pytest.approx(1.0)
    same = hashed_embedding("where did the cat go", "coqa", 64)
    other = hashed_embedding("completely unrelated words here", "quac", 64)
    assert float(x @ same) > float(x @ other)


def test_learns_which_backend_answers_similar_questions():
    policy = KnnQualityPolicy(2, explore=0.0, cost_weight=0.0)
    history = [request(i, f"what colour was the boat number {i}") for i in range(20)]
    policy.allocate(context(history[:1]))  # the policy learns the backends' prices from its first batch
    for req in history:
        policy.observe(req, 0, observation(req, 0, correct=True))
        policy.observe(req, 1, observation(req, 1, correct=False))
    quality, cost, labels = policy.predict(
        np.stack([policy.embed(request(99, "what colour was the boat"))]), np.ones((1, 2))
    )
    assert quality[0, 0] > 0.8 > 0.2 > quality[0, 1]
    assert labels.tolist() == [20.0, 20.0] and cost[0, 0] == pytest.approx(40 * 0.05 + 8 * 0.1)
    alloc = policy.allocate(context([request(100, "what colour was the boat")]))
    assert alloc.assignment.tolist() == [0] and not alloc.paid.any()


def test_memory_is_a_bounded_ring():
    policy = KnnQualityPolicy(2, memory=3)
    policy.allocate(context([request(0, "q")]))
    for i in range(5):
        req = request(i, f"q{i}")
        policy.observe(req, 0, observation(req, 0, correct=i % 2 == 0))
    assert policy.memories[0].size == 3 and policy.memories[0].count == 5 and policy.memories[1].size == 0


def test_serves_every_turn_in_the_cluster():
    cluster = InProcessCluster(profile_backends(["qwen3-4b", "qwen3-8b"]), "knn", seed=1)
    logs = cluster.run(synthetic_dialogues("coqa", 4, seed=1, turns=3), concurrency=4)
    assert len(logs) == 12 and {x.backend for x in logs} <= {"qwen3-4b-0", "qwen3-8b-1"}


def test_last_user_message_edges():
    assert last_user_message("no chat template here") == "no chat template here"
    assert last_user_message("<|user|>\nfirst words") == "first words"


def test_embedding_reads_words_case_blind_and_the_domain():
    cat = hashed_embedding("The Cat sat", "coqa", 256)
    assert np.array_equal(cat, hashed_embedding("the cat SAT", "coqa", 256))
    assert not np.array_equal(cat, hashed_embedding("the dog sat", "coqa", 256))
    assert not np.array_equal(cat, hashed_embedding("the cat sat", "quac", 256))
    policy = KnnQualityPolicy(2)
    coqa, quac = policy.embed(request(0, "why", "coqa")), policy.embed(request(0, "why", "quac"))
    assert not np.array_equal(coqa, quac)


def test_embedding_counts_repeated_grams_and_signs_them_at_random():
    # "x x y": grams x, x, y, "x x", "x y" and the domain tag; x counts twice.
    x = hashed_embedding("x x y", None, 1 << 16)
    assert sorted(np.abs(x[x != 0]) * np.sqrt(8)) == pytest.approx([1, 1, 1, 1, 2])
    # Signed hashing: about half the features count down, so unrelated texts are orthogonal on average.
    words = " ".join(f"w{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{i}" for i in range(300))
    many = hashed_embedding(words, None, 1 << 16)
    assert 0.35 < (many > 0).sum() / (many != 0).sum() < 0.65


def test_bad_sizes_are_refused_and_one_neighbour_is_enough():
    for bad in ({"k": 0}, {"dim": 0}, {"memory": 0}):
        with pytest.raises(ValueError, match="k, dim and memory must be >= 1"):
            KnnQualityPolicy(2, **bad)
    assert KnnQualityPolicy(2, k=1, dim=1, memory=1).k == 1


def unit(i: int, dim: int = 4) -> np.ndarray:
    x = np.zeros(dim)
    x[i] = 1.0
    return x


def test_prediction_by_hand():
    # Backend 0 remembers three queries along the axes; backend 1 nothing; backend 2 two queries
    # unlike the probe (cosine -0.6 and 0), which still count with weight 1e-3 each.
    policy = KnnQualityPolicy(3, k=2, dim=4, memory=8)
    policy.memories[0].add(unit(0), 1.0, 2.0)
    policy.memories[0].add(unit(1), 0.0, 4.0)
    policy.memories[0].add(unit(2), 1.0, 10.0)
    policy.memories[2].add(-unit(0), 0.0, 6.0)
    policy.memories[2].add(unit(3), 1.0, 8.0)
    probe = np.array([[0.6, 0.8, 0.0, 0.0]])
    quality, cost, labels = policy.predict(probe, np.array([[1.0, 7.0, 3.0]]))
    near = np.array([0.8, 0.6]) + 1e-3  # the two most similar: unit(1), then unit(0)
    assert quality[0, 0] == pytest.approx((near @ [0.0, 1.0] + 1.0) / (near.sum() + 2.0), rel=1e-12)
    assert cost[0, 0] == pytest.approx(near @ [4.0, 2.0] / near.sum(), rel=1e-12)
    assert (quality[0, 1], cost[0, 1]) == (0.5, 7.0)  # nothing remembered: prior and list price
    assert quality[0, 2] == pytest.approx((1e-3 + 1.0) / (2e-3 + 2.0), rel=1e-12)
    assert cost[0, 2] == pytest.approx(7.0, rel=1e-12)
    assert labels.tolist() == [3.0, 0.0, 2.0]


def test_predictions_are_weighted_averages_of_what_was_remembered():
    # Non-negative weights: quality stays a probability, cost within the remembered costs.
    rng = np.random.default_rng(4)
    policy = KnnQualityPolicy(1, k=40, dim=8, memory=40)  # every neighbour, the unlike ones too
    for _ in range(40):
        key = rng.normal(size=8)
        policy.memories[0].add(key / np.linalg.norm(key), float(rng.random() < 0.5), rng.uniform(1.0, 9.0))
    probes = rng.normal(size=(200, 8))
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    quality, cost, _ = policy.predict(probes, np.ones((200, 1)))
    remembered = policy.memories[0].cost
    assert ((quality > 0) & (quality < 1)).all()
    assert (cost >= remembered.min() - 1e-9).all() and (cost <= remembered.max() + 1e-9).all()


def test_the_ring_forgets_the_oldest_queries_first():
    policy = KnnQualityPolicy(1, k=1, dim=4, memory=3)
    for i, correct in enumerate([1.0, 0.0, 1.0, 0.0]):  # the fourth overwrites the first
        policy.memories[0].add(unit(i), correct, 1.0 + i)
    quality, cost, labels = policy.predict(np.stack([unit(0), unit(2), unit(3)]), np.ones((3, 1)))
    assert labels.tolist() == [3.0]
    assert quality[1, 0] > 0.6 and quality[2, 0] < 0.4  # unit(2) right, unit(3) wrong: both remembered
    assert quality[0, 0] < 0.6 and cost[1, 0] == pytest.approx(3.0) and cost[2, 0] == pytest.approx(4.0)


def test_decision_is_the_documented_score():
    # quality + explore / sqrt(1 + labels) - cost_weight * cost / (the row's largest cost)
    rng = np.random.default_rng(9)
    questions = [f"question {w} about {v}" for w in ("boats", "taxes", "birds") for v in ("price", "colour")]
    for trial in range(12):
        scale = 1.0 if trial % 2 else 0.05  # costs of a few credits, or below one credit
        specs = [BackendSpec(name=f"b{i}", model="m", capacity=99, price_input=p * scale,
                             price_cached_input=p * scale / 2, price_output=p * scale * 2)
                 for i, p in enumerate([0.01, 0.002, 0.03])]
        explore, cost_weight = float(rng.uniform(0.1, 1.0)), float(rng.uniform(0.2, 2.0))
        policy = KnnQualityPolicy(3, k=4, explore=explore, cost_weight=cost_weight)
        policy.allocate(context([request(0, questions[0])], specs=specs))  # learns the prices
        for i in range(int(rng.integers(0, 12))):
            req = request(i, questions[int(rng.integers(0, 6))])
            backend = int(rng.integers(0, 3))
            obs = observation(req, backend, bool(rng.random() < 0.5))
            obs.prompt_tokens = int(rng.integers(1, 200))
            policy.observe(req, backend, obs)
        batch = [request(100 + i, questions[i]) for i in range(6)]
        for i, r in enumerate(batch):
            r.prompt_tokens = 10 + 30 * i
        x = np.stack([policy.embed(r) for r in batch])
        prompt = np.array([r.prompt_tokens for r in batch], dtype=float)
        quality, cost, labels = policy.predict(x, prompt[:, None] * [s.price_input for s in specs])
        relative = cost / cost.max(axis=1, keepdims=True)
        score = quality + explore / np.sqrt(1.0 + labels) - cost_weight * relative
        chosen = policy.allocate(context(batch, capacity=99, specs=specs)).assignment
        assert chosen.tolist() == np.argmax(score, axis=1).tolist(), trial


def test_only_finished_answers_with_known_correctness_are_remembered():
    policy = KnnQualityPolicy(2)
    req = request(0, "what colour was the boat")
    policy.observe(req, 0, observation(req, 0, correct=True))  # before any batch: prices unknown
    assert policy.memories[0].size == 0
    policy.allocate(context([req]))
    failed = observation(req, 0, correct=True)
    failed.ok = False
    policy.observe(req, 0, failed)
    unknown = observation(req, 1, correct=True)
    unknown.correct = None
    policy.observe(req, 1, unknown)
    assert [m.size for m in policy.memories] == [0, 0]
    policy.observe(req, 1, observation(req, 1, correct=False))
    assert [m.size for m in policy.memories] == [0, 1]
