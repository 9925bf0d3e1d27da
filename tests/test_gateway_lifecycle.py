"""The one request path both faces walk: batching rule, dispatch with failover, settle once."""

from __future__ import annotations

import math

import pytest

from mercato.gateway.core.batching import BatchingRule
from mercato.gateway.core.lifecycle import Dispatch
from mercato.gateway.core.router import Router
from mercato.gateway.core.types import BackendSpec, BuyerReport, Observation, RouteRequest
from mercato.gateway.sim.cluster import InProcessCluster, profile_backends
from mercato.workloads import synthetic_dialogues

FLEET = ["qwen3-4b", "qwen3-4b", "qwen3-8b", "llama3-8b"]


def test_batching_rule_flushes_full_batches_now_and_others_after_the_wait():
    rule = BatchingRule(max_batch=4, max_wait_s=0.01)
    assert rule.due(0, math.inf, math.inf, 5.0) == math.inf
    assert rule.due(1, 2.0, 2.0, 2.003) == pytest.approx(2.01)
    assert rule.due(3, 2.0, 2.002, 2.003) == pytest.approx(2.01)  # the wait counts from the first request
    assert rule.due(4, 2.0, 2.002, 2.003) == 2.003
    assert rule.due(9, 2.0, 2.002, 2.003) == 2.003
    with pytest.raises(ValueError, match="max_batch"):
        BatchingRule(max_batch=0)
    with pytest.raises(ValueError, match="max_wait_s"):
        BatchingRule(max_wait_s=-1.0)
    with pytest.raises(ValueError, match="quiet_s"):
        BatchingRule(quiet_s=-1.0)


def test_batching_rule_flushes_a_quiet_queue_before_the_wait():
    rule = BatchingRule(max_batch=16, max_wait_s=0.01, quiet_s=0.001)
    assert rule.due(1, 2.0, 2.0, 2.0) == pytest.approx(2.001)  # a lone request leaves when nobody follows
    assert rule.due(3, 2.0, 2.0045, 2.005) == pytest.approx(2.0055)  # each arrival keeps the batch open
    assert rule.due(12, 2.0, 2.0095, 2.0096) == pytest.approx(2.01)  # but never past the wait
    off = BatchingRule(max_batch=16, max_wait_s=0.01, quiet_s=0.01)
    assert off.due(2, 2.0, 2.004, 2.005) == pytest.approx(2.01)  # quiet >= wait: the IEMAS rule


def _router() -> Router:
    specs = [BackendSpec(n, "m", 2, 1.0, 0.5, 2.0) for n in ("a", "b", "c")]
    return Router(specs, "least_loaded")


def _request(i: int) -> RouteRequest:
    return RouteRequest(f"r{i}", "hello " * 20, 40, 8, f"s{i}", 1, "coqa", None, "buyer", BuyerReport(), 0.0)


def _inflight(router: Router) -> dict[str, float]:
    return {n: b["inflight"] for n, b in router.snapshot()["backends"].items()}


def test_dispatch_keeps_inflight_counts_right_across_failover_and_settles_once():
    router = _router()
    [decision] = router.route([_request(0)], now=0.0)
    trip = Dispatch(router, decision, lambda: 1.0)
    first, second = trip.ranking[:2]
    trip.attempt(first)
    assert _inflight(router)[first] == 1
    trip.abandon(first)
    trip.attempt(second)
    assert _inflight(router)[first] == 0 and _inflight(router)[second] == 1
    assert trip.failovers == 1
    record = trip.succeed(Observation("r0", second, True, 0.05, 0.2, 40, 10, 5, "hi"))
    assert record is not None and record.backend == second
    assert record.cost == pytest.approx(30 * 1.0 + 10 * 0.5 + 5 * 2.0)
    assert sum(_inflight(router).values()) == 0 and router.pending == 0
    with pytest.raises(RuntimeError, match="settled twice"):
        trip.fail("again")


def test_a_failed_dispatch_is_forgotten_without_a_record():
    router = _router()
    [decision] = router.route([_request(1)], now=0.0)
    trip = Dispatch(router, decision, lambda: 0.5)
    trip.attempt(trip.ranking[0])
    trip.fail("backend refused")
    assert router.totals.failed == 1 and router.totals.requests == 0
    assert sum(_inflight(router).values()) == 0 and router.pending == 0


def test_the_virtual_clock_fails_over_from_an_engine_taken_down():
    specs = profile_backends(FLEET)
    cluster = InProcessCluster(specs, "cache_aware", seed=0)
    down = specs[0].name
    cluster.take_down(down)
    logs = cluster.run(synthetic_dialogues("coqa", 8, seed=0, turns=4), concurrency=4)
    assert len(logs) == 32 and cluster.failed == 0
    assert down not in {log.backend for log in logs}
    assert cluster.failovers > 0  # the router still ranked it first: it has not been told
    snap = cluster.router.snapshot()
    assert snap["pending"] == 0 and all(b["inflight"] == 0 for b in snap["backends"].values())


def test_a_request_no_backend_accepts_ends_its_dialogue():
    specs = profile_backends(FLEET[:2])
    cluster = InProcessCluster(specs, "round_robin", seed=0)
    for spec in specs:
        cluster.take_down(spec.name)
    logs = cluster.run(synthetic_dialogues("coqa", 3, seed=0, turns=2), concurrency=2)
    assert logs == [] and cluster.failed == 3
    assert cluster.router.snapshot()["pending"] == 0
    with pytest.raises(KeyError):
        cluster.take_down("nope")
