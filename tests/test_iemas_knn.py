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


def context(requests: list[RouteRequest], capacity: int = 4) -> BatchContext:
    n, m = len(requests), len(SPECS)
    zeros = np.zeros((n, m))
    return BatchContext(
        requests,
        SPECS,
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
