"""Gateway replicas share load by lease and prefix entries by stream, through a real (embedded) Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import orjson
import pytest
import redis

from mercato.gateway.core.load import BackendLoad
from mercato.gateway.core.prefix import PrefixLedger
from mercato.gateway.core.replicas import BackendShare, ReplicaView, RouterPart, summed
from mercato.gateway.live.embedded_redis import EmbeddedRedis, embedded_redis
from mercato.gateway.live.replica_sync import LEASE_S, LOAD, REPLICAS, ReplicaSync

NAMES = ["b0", "b1"]


def view() -> tuple[ReplicaView, BackendLoad, PrefixLedger]:
    load, ledger = BackendLoad([4, 4]), PrefixLedger(NAMES)
    return ReplicaView([RouterPart(NAMES, load, ledger)]), load, ledger


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> float:
    """Seconds until ``condition`` held; fails the test after ``timeout_s``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not true within {timeout_s} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def test_views_sum_other_replicas_and_age_their_queues() -> None:
    v, load, _ = view()
    load.dispatched(0, 100.0, 0.4)  # own: one request, 0.4 s of prefill queued at b0
    reports = [{"b0": BackendShare(2.0, 1.0)}, {"b0": BackendShare(1.0, 0.5), "b1": BackendShare(3.0, 0.0)}]
    v.share(summed(reports), 100.0)
    assert list(load.busy()) == [4.0, 3.0]
    assert v.others_inflight() == 6.0
    assert load.prefill_wait(100.0)[0] == pytest.approx(0.4 + 1.5)
    assert load.prefill_wait(101.0)[0] == pytest.approx(0.5)  # own drained, others' 1.5 s minus 1 s
    assert list(load.offered_capacity(1)) == [0, 1]  # capacity 4 minus every replica's requests
    own = v.own_load(100.0)
    assert own["b0"] == BackendShare(1.0, pytest.approx(0.4)) and own["b1"] == BackendShare(0.0, 0.0)
    v.share({}, 101.0)  # nobody else reports: only this replica's own load counts
    assert list(load.busy()) == [1.0, 0.0]


def test_remembered_entries_are_not_sent_back() -> None:
    v, _, ledger = view()
    heard: list[tuple[str, str, str]] = []
    v.listen(lambda *entry: heard.append(entry))
    ledger.observe("b0", "s1", "turn one", affinity=0.0, prompt_tokens=3, cached_tokens=0)
    v.remember("b1", "s2", "from another replica")
    v.remember("elsewhere", "s3", "a backend this replica does not have")
    assert heard == [("b0", "s1", "turn one")]
    assert ledger.affinity("b1", "s2", "from another replica, next turn") > 0.6


def test_two_replicas_share_load_and_prefix_state() -> None:
    async def scenario(url: str) -> None:
        (va, load_a, ledger_a), (vb, load_b, ledger_b) = view(), view()
        a, b = ReplicaSync(va, url, "a"), ReplicaSync(vb, url, "b")
        await a.start()
        await b.start()
        try:
            load_a.dispatched(1, time.time(), 2.0)
            await until(lambda: load_b.busy()[1] == 1.0)
            assert load_b.prefill_wait(time.time())[1] > 1.0 and b.peers == 1
            ledger_a.observe("b1", "dialogue-7", "system: hi\nuser: where is the boat?\nassistant: north",
                             affinity=0.0, prompt_tokens=20, cached_tokens=0)
            await until(lambda: ledger_b.affinity("b1", "dialogue-7", "system: hi\nuser: where") > 0.9)
            assert ledger_b.affinity("b0", "dialogue-7", "system: hi") == 0.0
            assert b.received == 1 and a.received == 0  # nobody applies its own entries
            load_a.released(1)
            await until(lambda: load_b.busy()[1] == 0.0)
            # a replica that starts later inherits the recent prefix entries
            vc, _, ledger_c = view()
            c = ReplicaSync(vc, url, "c")
            await c.start()
            await until(lambda: ledger_c.affinity("b1", "dialogue-7", "system: hi") == 1.0)
            await c.stop()
            await until(lambda: a.peers == 1)  # c gave its lease back on stop
        finally:
            await a.stop()
            await b.stop()

    with embedded_redis() as server:
        asyncio.run(scenario(server.url))


def test_a_dead_replica_leaves_the_view_when_its_lease_expires() -> None:
    async def scenario(url: str) -> None:
        v, load, _ = view()
        sync = ReplicaSync(v, url, "alive")
        client = redis.Redis.from_url(url)
        # what a replica killed with -9 leaves behind: its last report and its registration
        report = orjson.dumps({"at": time.time(), "load": {"b0": [3, 0.0], "b1": [1, 0.0]}})
        client.set(LOAD + "ghost", report, px=int(LEASE_S * 1000))
        client.zadd(REPLICAS, {"ghost": time.time() * 1000 + LEASE_S * 1000})
        client.close()
        await sync.start()
        try:
            await until(lambda: list(load.busy()) == [3.0, 1.0])
            gone = await until(lambda: list(load.busy()) == [0.0, 0.0], timeout_s=LEASE_S + 2.0)
            assert gone <= LEASE_S + 1.0 and sync.peers == 0
        finally:
            await sync.stop()

    with embedded_redis() as server:
        asyncio.run(scenario(server.url))


def test_redis_outage_falls_back_to_local_state_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(server: EmbeddedRedis) -> None:
        (va, load_a, ledger_a), (vb, load_b, ledger_b) = view(), view()
        a, b = ReplicaSync(va, server.url, "a"), ReplicaSync(vb, server.url, "b")
        await a.start()
        await b.start()
        try:
            load_a.dispatched(0, time.time(), 0.0)
            await until(lambda: load_b.busy()[0] == 1.0)
            await asyncio.to_thread(server.stop)
            await until(lambda: not b.reachable and not a.reachable)
            assert load_b.busy()[0] == 0.0  # the others' load is dropped, not trusted stale
            ledger_a.observe("b0", "s9", "said while Redis was away", affinity=0.0, prompt_tokens=5,
                             cached_tokens=0)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(server.start)  # empty: leases and stream are rebuilt by the replicas
            await until(lambda: a.reachable and b.reachable, timeout_s=10.0)
            await until(lambda: load_b.busy()[0] == 1.0)
            await until(lambda: ledger_b.affinity("b0", "s9", "said while Redis was away") == 1.0)
        finally:
            await a.stop()
            await b.stop()

    with caplog.at_level(logging.WARNING, logger="mercato.gateway"), embedded_redis() as server:
        asyncio.run(scenario(server))
    lost = [r for r in caplog.records if "unreachable" in r.getMessage()]
    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(lost) == 2 and len(back) == 2  # once each, per replica, however long the outage
