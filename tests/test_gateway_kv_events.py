"""The gateway follows KV events over real ZeroMQ: in-order streams are exact, missed batches come
back from the replay endpoint or send the backend to the prefix ledger until a known state (a
restart at sequence 0, AllBlocksCleared), and bad input is counted and skipped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import msgspec
import zmq
import zmq.asyncio

from gateway_live_support import gateway
from mercato.engine.kv_cache import BLOCK_TOKENS
from mercato.engine.kv_events import ARRAY, MAP, KVEventLog, encode_batch
from mercato.engine.kv_publisher import KVEventPublisher
from mercato.gateway.core.kv_index import KVIndex
from mercato.gateway.live.config import (
    AccountingConfig,
    GatewayConfig,
    KVEventsSource,
    StateConfig,
    parse_config,
)
from mercato.gateway.live.embedded_redis import embedded_redis
from mercato.gateway.live.fleet import EngineFleet
from mercato.gateway.live.kv_subscriber import KVEventSubscriber
from mercato.gateway.live.kv_wire import decode_batch
from mercato.gateway.live.metrics import GatewayMetrics
from mercato.ports import free_port

TEXT = "the quiet harbour at dawn " * 40


def tcp() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Follower:
    """A subscriber for backend "e" running on the test's loop, with its index and metrics."""

    def __init__(self, endpoint: str, replay: str | None) -> None:
        self.index = KVIndex({"e": 1000})
        self.metrics = GatewayMetrics()
        self.ctx = zmq.asyncio.Context()
        source = KVEventsSource(endpoint=endpoint, replay_endpoint=replay, tokenizer="mercato")
        self.sub = KVEventSubscriber("e", source, self.index, self.metrics, self.ctx)
        self.task = asyncio.create_task(self.sub.run())

    async def connected(self) -> None:
        await until(lambda: self.sub.connected)
        await asyncio.sleep(0.2)  # the subscription travels to the publisher after the connection

    def counter(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, {"backend": "e", **labels}) or 0.0

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.ctx.destroy(linger=0)


def stored(log: KVEventLog, first: int, count: int) -> None:
    """Blocks ``first .. first + count - 1`` of TEXT, hashed by their number."""
    log.stored(list(range(first, first + count)), first - 1 if first else None, TEXT, first)


class Relay:
    """A lossy network: forwards the publisher's messages to its own PUB, dropping chosen sequence numbers."""

    def __init__(self, ctx: zmq.asyncio.Context, source: str, drop: set[int]) -> None:
        self.tap = ctx.socket(zmq.SUB)
        self.tap.setsockopt(zmq.SUBSCRIBE, b"")
        self.tap.connect(source)
        self.out = ctx.socket(zmq.PUB)
        self.endpoint = tcp()
        self.out.bind(self.endpoint)
        self.drop = drop
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            frames = await self.tap.recv_multipart()
            if int.from_bytes(frames[1], "big") not in self.drop:
                await self.out.send_multipart(frames)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.tap.close(linger=0)
        self.out.close(linger=0)


def test_a_missed_batch_comes_back_from_the_replay_endpoint_and_the_index_stays_exact():
    async def scenario() -> None:
        log = KVEventLog(BLOCK_TOKENS)
        pub_ep, replay_ep = tcp(), tcp()
        publisher = KVEventPublisher(log, pub_ep, replay_ep)
        publisher.start()
        ctx = zmq.asyncio.Context()
        relay = Relay(ctx, pub_ep, drop={1})
        follower = Follower(relay.endpoint, replay_ep)
        await follower.connected()
        await asyncio.sleep(0.2)  # and the relay's own subscription
        for first in (0, 2, 4):
            stored(log, first, 2)
            publisher.flush()
        await until(lambda: follower.sub.next_seq == 3)
        assert follower.index.exact("e") and follower.index.blocks("e") == 6
        assert follower.counter("mercato_kv_sync_lost_total", cause="gap") == 0
        await follower.close()
        await relay.close()
        await publisher.close()
        ctx.destroy(linger=0)

    asyncio.run(scenario())


def test_a_late_subscriber_replays_from_zero_and_without_replay_waits_for_a_known_state():
    async def scenario() -> None:
        log = KVEventLog(BLOCK_TOKENS)
        pub_ep, replay_ep = tcp(), tcp()
        publisher = KVEventPublisher(log, pub_ep, replay_ep)
        publisher.start()
        for first in (0, 2):
            stored(log, first, 2)
            publisher.flush()  # nobody listens yet
        replaying, blind = Follower(pub_ep, replay_ep), Follower(pub_ep, None)
        await replaying.connected()
        await blind.connected()
        stored(log, 4, 2)
        publisher.flush()
        await until(lambda: replaying.sub.next_seq == 3 and blind.sub.next_seq == 3)
        assert replaying.index.exact("e") and replaying.index.blocks("e") == 6
        assert not blind.index.exact("e") and blind.index.blocks("e") == 0  # parent unknown: on the ledger
        assert blind.counter("mercato_kv_sync_lost_total", cause="late start") == 1

        log.cleared()  # POST /reset_prefix_cache: a known state
        stored(log, 0, 1)
        publisher.flush()
        await until(lambda: blind.sub.next_seq == 4)
        assert blind.index.exact("e") and blind.index.blocks("e") == 1
        for f in (replaying, blind):
            await f.close()
        await publisher.close()

    asyncio.run(scenario())


def test_a_publisher_gone_suspends_the_index_and_its_restart_at_zero_resyncs_it():
    async def scenario() -> None:
        pub_ep = tcp()
        log = KVEventLog(BLOCK_TOKENS)
        publisher = KVEventPublisher(log, pub_ep)
        follower = Follower(pub_ep, None)
        await follower.connected()
        stored(log, 0, 3)
        publisher.flush()
        await until(lambda: follower.index.blocks("e") == 3)
        assert follower.index.exact("e")
        await publisher.close()
        await until(lambda: not follower.index.exact("e"))
        assert follower.counter("mercato_kv_sync_lost_total", cause="publisher gone") == 1

        restarted = KVEventPublisher(log, pub_ep)  # a new engine process: empty cache, sequence from 0
        await follower.connected()
        stored(log, 0, 1)
        restarted.flush()
        await until(lambda: follower.index.exact("e"))
        assert follower.index.blocks("e") == 1  # the old engine's blocks are gone
        await follower.close()
        await restarted.close()

    asyncio.run(scenario())


def test_malformed_and_unknown_input_is_counted_and_skipped():
    async def scenario() -> None:
        ctx = zmq.asyncio.Context()
        pub = ctx.socket(zmq.PUB)
        endpoint = tcp()
        pub.bind(endpoint)
        follower = Follower(endpoint, None)
        await follower.connected()
        good = ARRAY.stored([1], None, list(range(16)), 16, None, "GPU", None)
        short = ARRAY.stored([2], 1, list(range(15)), 16, None, "GPU", None)
        offloaded = ARRAY.stored([3], 1, list(range(16, 32)), 16, None, "CPU", None)
        mixed = msgspec.msgpack.encode([1.0, [good, ["BlockMigrated", [1], "peer"], ["BlockStored", "x"],
                                              short, offloaded]])
        messages = [[b"", b"\x00" * 8, mixed], [b"only two", b"frames"], [b"", b"\x01\x02", b"x"],
                    [b"", (1).to_bytes(8, "big"), b"\xc1 not msgpack"],
                    [b"", (2).to_bytes(8, "big"), msgspec.msgpack.encode({"ts": 1.0})]]
        for frames in messages:
            await pub.send_multipart(frames)
        await until(lambda: follower.sub.next_seq == 3)
        assert follower.task.done() is False
        assert follower.index.exact("e") and follower.index.blocks("e") == 1
        assert follower.counter("mercato_kv_events_skipped_total", reason="unknown") == 1
        assert follower.counter("mercato_kv_events_skipped_total", reason="malformed") == 6
        assert follower.counter("mercato_kv_events_skipped_total", reason="medium") == 1
        assert follower.counter("mercato_kv_events_total", type="BlockStored") == 1
        await follower.close()
        pub.close(linger=0)
        ctx.destroy(linger=0)

    asyncio.run(scenario())


def test_both_layouts_vllm_has_used_decode_to_the_same_events():
    events = [MAP.stored([b"\x01" * 32], None, list(range(16)), 16, None, "GPU", None),
              MAP.removed([7], "GPU"), MAP.cleared()]
    as_map = msgspec.msgpack.encode(MAP.batch(2.0, events, 0))
    old = msgspec.msgpack.encode([2.0, [["BlockStored", [b"\x01" * 32], None, list(range(16)), 16, None],
                                        ["BlockRemoved", [7]], ["AllBlocksCleared"]]])
    newest = encode_batch([ARRAY.stored([b"\x01" * 32], None, list(range(16)), 16, None, "GPU", None),
                           ARRAY.removed([7], "GPU"), ARRAY.cleared()])
    decoded = [decode_batch(p) for p in (as_map, old, newest)]
    assert all(d.malformed == d.unknown == 0 for d in decoded)
    shapes = [[(type(e).__name__, getattr(e, "block_hashes", None)) for e in d.events] for d in decoded]
    assert shapes[0] == shapes[1] == shapes[2]


def test_the_gateway_follows_a_live_fleet(tmp_path):
    with EngineFleet(["qwen3-4b", "qwen3-4b"], speed=0.0, kv_events=True) as fleet:
        config = GatewayConfig(backends=fleet.backend_configs(),
                               accounting=AccountingConfig(db=tmp_path / "ledger.db"))
        assert parse_config(config.model_dump(mode="json")).backends[0].kv_events is not None
        with gateway(config) as (url, gw):
            time.sleep(0.5)  # the subscriptions reach the engines
            assert gw.router.snapshot()["kv_exact"] == []  # nothing heard yet: the ledger
            for engine in fleet.engines:  # the first batch of each engine (sequence 0) syncs it
                body = {"model": "qwen3-4b", "max_tokens": 8, "messages": [{"role": "user", "content": TEXT}]}
                assert httpx.post(f"{engine.url}/chat/completions", json=body, timeout=30).status_code == 200
            deadline = time.monotonic() + 10
            while len(gw.router.snapshot()["kv_exact"]) < 2:
                assert time.monotonic() < deadline, "the gateway never synced"
                time.sleep(0.05)
            metrics = httpx.get(f"{url}/metrics").text
    assert 'mercato_kv_exact{backend="qwen3-4b-1"} 1.0' in metrics
    blocks = [line.split()[-1] for line in metrics.splitlines()
              if line.startswith("mercato_kv_index_blocks{")]
    assert len(blocks) == 2 and blocks[0] == blocks[1] and float(blocks[0]) > 0  # same work, same cache


def test_replicas_each_follow_the_fleet_and_hold_the_same_exact_state(tmp_path):
    """Gateway replicas share KV state through the engines themselves: each subscribes to every
    engine (a PUB socket serves any number of subscribers), so their indexes agree block for block."""
    with EngineFleet(["qwen3-4b", "qwen3-4b"], speed=0.0, kv_events=True) as fleet, \
            embedded_redis() as redis:
        replicas = [GatewayConfig(backends=fleet.backend_configs(), state=StateConfig(redis_url=redis.url),
                                  accounting=AccountingConfig(db=tmp_path / f"ledger-{k}.db"))
                    for k in (0, 1)]
        with gateway(replicas[0]) as (_, first), gateway(replicas[1]) as (_, second):
            time.sleep(0.5)  # the subscriptions reach the engines
            for engine in fleet.engines:
                body = {"model": "qwen3-4b", "max_tokens": 8, "messages": [{"role": "user", "content": TEXT}]}
                assert httpx.post(f"{engine.url}/chat/completions", json=body, timeout=30).status_code == 200
            assert first.kv_index is not None and second.kv_index is not None
            names = ("qwen3-4b-0", "qwen3-4b-1")

            def blocks() -> list[list[int]]:
                return [[gw.kv_index.blocks(name) for name in names] for gw in (first, second)]

            # synced, then the last batch applied by both (each replica's subscriber runs at its own pace)
            deadline = time.monotonic() + 10
            while (any(len(gw.router.snapshot()["kv_exact"]) < 2 for gw in (first, second))
                   or blocks()[0] != blocks()[1]):
                assert time.monotonic() < deadline, f"the replicas never agreed: {blocks()}"
                time.sleep(0.05)
            final = blocks()
    assert final[0] == final[1] and min(final[0]) > 0
