"""The Router core in-process on a virtual clock: every policy completes, determinism, economics."""

from __future__ import annotations

import pytest

from mercato.gateway.core.policies import POLICY_NAMES
from mercato.gateway.sim.cluster import InProcessCluster, profile_backends
from mercato.workloads import synthetic_dialogues

FLEET = ["qwen3-4b", "qwen3-4b", "qwen3-8b", "llama3-8b", "qwen3-32b"]


def run(policy: str, seed: int = 0, dialogues: int = 10, turns: int = 5):
    cluster = InProcessCluster(profile_backends(FLEET), policy, seed=seed)
    logs = cluster.run(synthetic_dialogues("coqa", dialogues, seed=seed, turns=turns), concurrency=6)
    return cluster, logs


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_policy_serves_every_turn_in_order(policy):
    cluster, logs = run(policy)
    assert len(logs) == 50
    by_dialogue: dict[str, list[int]] = {}
    for log in logs:
        by_dialogue.setdefault(log.dialogue_id, []).append(log.turn)
        assert log.payment >= log.cost - 1e-9 and log.surplus >= -1e-9
        assert 0 <= log.cached_tokens <= log.prompt_tokens
    assert all(turns == sorted(turns) == list(range(1, 6)) for turns in by_dialogue.values())
    snap = cluster.router.snapshot()
    assert snap["pending"] == 0 and all(b["inflight"] == 0 for b in snap["backends"].values())


def test_same_seed_same_run():
    a = [log.row() for log in run("auction", seed=3)[1]]
    b = [log.row() for log in run("auction", seed=3)[1]]
    assert a == b


def test_auction_beats_round_robin_on_cost_and_cache():
    _, auction = run("auction", dialogues=16, turns=6)
    _, rr = run("round_robin", dialogues=16, turns=6)

    def mean(logs, f):
        return sum(f(x) for x in logs) / len(logs)

    assert mean(auction, lambda x: x.cost) < mean(rr, lambda x: x.cost)
    hit = lambda x: x.cached_tokens / x.prompt_tokens  # noqa: E731
    assert mean(auction, hit) > mean(rr, hit)


def test_bad_concurrency():
    cluster = InProcessCluster(profile_backends(FLEET[:1]), "auction")
    with pytest.raises(ValueError, match="concurrency"):
        cluster.run([], concurrency=0)
