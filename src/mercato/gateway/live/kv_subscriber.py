"""Follows each backend's KV-cache events into the exact index, and decides when the index is trusted.

One task per backend subscribes to its publisher (``BackendConfig.kv_events``) and applies every
batch in sequence order. The index is trusted (routing reads it instead of the prefix ledger)
only while the events applied describe the whole cache, that is, since a point where the cache
was known and with no batch missing since:

- sequence 0 is a publisher's first batch, so its engine started empty: the index is cleared and
  trusted;
- an ``AllBlocksCleared`` event empties the cache: the index is cleared and trusted;
- a jump in the sequence (missed batches), a late start (the first batch seen is not 0) or a
  restart seen late (the sequence went back) asks the replay endpoint for the missing batches;
  when all of them come back the index stays (or, replayed from 0, becomes) trusted, otherwise it
  is cleared and not trusted until one of the two points above;
- the publisher's connection dropping (ZeroMQ's socket monitor) suspends trust until its next
  batch shows whether anything was missed.

Malformed messages or events, and events of unknown types, are counted and skipped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from mercato.engine.kv_events import MEDIUM_GPU
from mercato.engine.kv_publisher import END_SEQ
from mercato.gateway.core.hf_tokenizer import load_tokenizer
from mercato.gateway.core.kv_index import IndexFull, KVIndex
from mercato.gateway.core.prompt_blocks import SIMULATED, PromptBlocks, TokenizerPromptBlocks
from mercato.gateway.live.config import HF_TOKENIZER, KNOWN_TOKENIZER, GatewayConfig, KVEventsSource
from mercato.gateway.live.kv_wire import decode_batch
from mercato.gateway.live.metrics import GatewayMetrics
from mercato.gateway.live.tasks import cancel_all

log = logging.getLogger("mercato.gateway")
REPLAY_TIMEOUT_S = 1.0  # silence from the replay endpoint after which the missing batches count as lost


def kv_index(config: GatewayConfig) -> KVIndex | None:
    """The index of every backend that publishes KV events (None when none does)."""
    sources = {b.name: b.kv_events for b in config.backends if b.kv_events is not None}
    if not sources:
        return None
    return KVIndex({name: s.max_blocks for name, s in sources.items()},
                   {name: prompt_blocks(s) for name, s in sources.items()})


def prompt_blocks(source: KVEventsSource) -> PromptBlocks:
    """How the backend's engine tokenizes a request, from the source's ``tokenizer``."""
    tokenizer = source.tokenizer or KNOWN_TOKENIZER
    if tokenizer.startswith(HF_TOKENIZER):
        return _model_blocks(tokenizer.removeprefix(HF_TOKENIZER))
    return SIMULATED


@functools.lru_cache(maxsize=16)
def _model_blocks(directory: str) -> PromptBlocks:
    """One chainer per model directory, so backends serving one model share each request's chain."""
    return TokenizerPromptBlocks(load_tokenizer(directory))


class KVEventSubscriber:
    """One backend's event stream: SUB socket, sequence check, replay and trust."""

    def __init__(self, backend: str, source: KVEventsSource, index: KVIndex, metrics: GatewayMetrics,
                 ctx: zmq.asyncio.Context) -> None:
        self.backend = backend
        self.source = source
        self.index = index
        self.metrics = metrics
        self.ctx = ctx
        self.next_seq: int | None = None  # the sequence number the next batch should carry
        self.trusted = False  # the events applied describe the whole cache
        self.connected = False

    async def run(self) -> None:
        """Receive and apply batches until cancelled."""
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, self.source.topic.encode())
        monitor = sub.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        sub.connect(self.source.endpoint)
        poller = zmq.asyncio.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while True:
                ready = dict(await poller.poll())
                if monitor in ready:
                    event = parse_monitor_message(await monitor.recv_multipart())
                    self.connected = event["event"] == zmq.EVENT_CONNECTED
                    if not self.connected:
                        self._lose("publisher gone", clear=False)
                if sub in ready:
                    await self.receive(await sub.recv_multipart())
        finally:
            sub.disable_monitor()
            monitor.close(linger=0)
            sub.close(linger=0)

    async def receive(self, frames: list[bytes]) -> None:
        """One message ``[topic, seq, payload]`` from the publisher."""
        if len(frames) != 3 or len(frames[1]) != 8:
            self.metrics.kv_skipped.labels(self.backend, "malformed").inc()
            return
        self.connected = True
        seq = int.from_bytes(frames[1], "big")
        if seq == 0:  # a publisher's first batch: its engine starts with an empty cache
            self.index.cleared(self.backend)
            self.trusted = True
        elif seq != self.next_seq:
            await self._recover(seq)
        self.next_seq = seq + 1
        self.apply(frames[2])
        self._publish_state()

    def apply(self, payload: bytes) -> None:
        """The events of one batch payload, in order."""
        decoded = decode_batch(payload)
        skipped = {"malformed": decoded.malformed, "unknown": decoded.unknown, "medium": 0}
        applied = {"BlockStored": 0, "BlockRemoved": 0, "AllBlocksCleared": 0}
        index, backend = self.index, self.backend
        for event in decoded.events:
            kind = type(event).__name__
            if kind == "AllBlocksCleared":
                index.cleared(backend)
                self.trusted = True
            elif event.medium not in (None, MEDIUM_GPU):
                skipped["medium"] += 1
                continue
            elif kind == "BlockRemoved":
                index.removed(backend, event.block_hashes)
            else:
                try:
                    index.stored(backend, event.block_hashes, event.parent_block_hash, event.token_ids,
                                 event.block_size)
                except ValueError:  # token ids that do not fill the blocks
                    skipped["malformed"] += 1
                    continue
                except IndexFull:
                    self._lose("index full", clear=True)
            applied[kind] += 1
        for counter, counts in ((self.metrics.kv_skipped, skipped), (self.metrics.kv_events, applied)):
            for label, n in counts.items():
                if n:
                    counter.labels(backend, label).inc(n)

    async def _recover(self, seq: int) -> None:
        """Batches before ``seq`` were missed: fetch them from the replay endpoint, or lose trust."""
        restarted = self.next_seq is not None and seq < self.next_seq
        first = 0 if self.next_seq is None or restarted else self.next_seq
        batches = await self._fetch(first, seq)
        if batches is None:
            cause = "late start" if self.next_seq is None else "restart missed" if restarted else "gap"
            self._lose(cause, clear=True)
            return
        if first == 0:
            self.index.cleared(self.backend)
            self.trusted = True
        for payload in batches:
            self.apply(payload)

    async def _fetch(self, first: int, stop: int) -> list[bytes] | None:
        """Payloads of batches ``first .. stop - 1`` from the replay endpoint; None if any is missing."""
        if self.source.replay_endpoint is None:
            return None
        dealer = self.ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(self.source.replay_endpoint)
        payloads: list[bytes] = []
        try:
            await dealer.send_multipart([b"", first.to_bytes(8, "big")])
            while await dealer.poll(int(REPLAY_TIMEOUT_S * 1000)):
                frames = await dealer.recv_multipart()
                if len(frames) != 3 or frames[1] == END_SEQ:
                    break
                seq = int.from_bytes(frames[1], "big")
                if first + len(payloads) == seq < stop:
                    payloads.append(frames[2])
        finally:
            dealer.close(linger=0)
        return payloads if len(payloads) == stop - first else None

    def _lose(self, cause: str, clear: bool) -> None:
        """The index no longer describes the whole cache (``clear``: and its blocks are dropped)."""
        log.warning("KV events of %s: %s; its affinity comes from the prefix ledger", self.backend, cause)
        self.metrics.kv_lost.labels(self.backend, cause).inc()
        if clear:
            self.trusted = False
            self.index.cleared(self.backend)
        self._publish_state()

    def _publish_state(self) -> None:
        self.index.set_exact(self.backend, self.trusted and self.connected)


class KVEventSubscribers:
    """A subscriber task for every backend of the configuration that publishes KV events."""

    def __init__(self, config: GatewayConfig, index: KVIndex, metrics: GatewayMetrics) -> None:
        self.ctx = zmq.asyncio.Context()
        self.subscribers = [KVEventSubscriber(b.name, b.kv_events, index, metrics, self.ctx)
                            for b in config.backends if b.kv_events is not None]
        for s in self.subscribers:
            metrics.watch_kv(s.backend, lambda name=s.backend: float(index.exact(name)),
                             lambda name=s.backend: float(index.blocks(name)))
        self._tasks: list[asyncio.Task[Any]] = []

    def start(self) -> None:
        """Start every subscriber on the running loop."""
        self._tasks = [asyncio.create_task(s.run(), name=f"mercato-kv-{s.backend}") for s in self.subscribers]

    async def stop(self) -> None:
        """Cancel the subscribers and close the sockets."""
        await cancel_all(self._tasks)
        self._tasks = []
        self.ctx.term()
