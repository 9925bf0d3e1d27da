"""`mercato bench kv-index`: what following KV events costs the gateway, per event and in memory.

- Update cost: the simulated engine (qwen3-8b, a 400-block pool, so evictions happen) serves CoQA
  dialogues and its KV events are encoded per engine step as it publishes them; the timed part is
  the gateway's whole path for those payloads (:meth:`KVEventSubscriber.apply`: decode, metrics,
  index), per event, and the index alone on the decoded events. Target: <= 20 us per event.
- Memory: a fleet of 8 backends, 12,500 blocks each (100,000 blocks) stored by events of 1 to 16
  blocks with 64-bit hashes, as vLLM's are; the index's own allocations, measured by tracemalloc.
  Target: <= 50 MB.
- Request side, for scale: computing one prompt's block chain (done once per request).

Each figure is the median of ``repeats`` runs with its min and max. Times are this process's CPU
time (``time.process_time``), which other processes on a shared machine disturb far less than
the wall clock; the work is single-threaded and never waits, so on an idle machine the two agree.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import msgspec
import zmq.asyncio

from mercato.engine import EngineCore, EngineRequest, get_profile
from mercato.engine.chat import render_chat
from mercato.engine.kv_cache import BLOCK_TOKENS
from mercato.engine.kv_events import ARRAY, KVEventLog, encode_batch
from mercato.gateway.core.kv_index import KVIndex
from mercato.gateway.core.prompt_blocks import prompt_chain
from mercato.gateway.live.config import KNOWN_TOKENIZER, KVEventsSource
from mercato.gateway.live.kv_subscriber import KVEventSubscriber
from mercato.gateway.live.metrics import GatewayMetrics
from mercato.workloads import dialogue_messages, synthetic_dialogues

UPDATE_TARGET_US = 20.0
MEMORY_TARGET_MB = 50.0
FLEET_BACKENDS = 8
FLEET_BLOCKS = 100_000
ENGINE_BLOCKS = 400
DIALOGUES = 60
TURNS = 10


def engine_payloads(seed: int) -> list[bytes]:
    """The simulated engine's event batches, one per step, for CoQA dialogues under pool pressure."""
    log = KVEventLog(BLOCK_TOKENS)
    core = EngineCore(get_profile("qwen3-8b"), max_num_seqs=8, num_gpu_blocks=ENGINE_BLOCKS,
                      max_model_len=ENGINE_BLOCKS * BLOCK_TOKENS, seed=seed, kv_events=log)
    dialogues = synthetic_dialogues("coqa", DIALOGUES, seed=seed, turns=TURNS)
    replies: dict[str, list[str]] = {d.dialogue_id: [] for d in dialogues}
    payloads = []
    for turn in range(1, TURNS + 1):
        for d in dialogues:
            messages = dialogue_messages(d, turn, replies[d.dialogue_id])
            core.submit(EngineRequest(f"{d.dialogue_id}-{turn}", render_chat(messages), max_tokens=48),
                        now=core.clock)
            payloads.append(encode_batch(log.take()))
            for result in core.advance(core.clock + 0.05):
                replies[result.request_id.rsplit("-", 1)[0]].append(result.text)
                payloads.append(encode_batch(log.take()))
        for result in core.advance(core.clock + 1e6):
            replies[result.request_id.rsplit("-", 1)[0]].append(result.text)
        payloads.append(encode_batch(log.take()))
    return [p for p in payloads if msgspec.msgpack.decode(p, type=ARRAY.batch).events]


def _spread(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def update_cost(payloads: list[bytes], repeats: int) -> dict[str, Any]:
    """Microseconds per event: the gateway's path (decode + metrics + index) and the index alone."""
    decoded = [msgspec.msgpack.decode(p, type=ARRAY.batch).events for p in payloads]
    events = sum(len(e) for e in decoded)
    ctx = zmq.asyncio.Context()
    whole, index_only = [], []
    for _ in range(repeats):
        index = KVIndex({"e": 1_000_000})
        # never connected: apply() is timed alone
        source = KVEventsSource(endpoint="tcp://127.0.0.1:1", tokenizer=KNOWN_TOKENIZER)
        follower = KVEventSubscriber("e", source, index, GatewayMetrics(), ctx)
        start = time.process_time()
        for payload in payloads:
            follower.apply(payload)
        whole.append((time.process_time() - start) / events * 1e6)
        index = KVIndex({"e": 1_000_000})
        start = time.process_time()
        for batch in decoded:
            for e in batch:
                kind = type(e).__name__
                if kind == "BlockStored":
                    index.stored("e", e.block_hashes, e.parent_block_hash, e.token_ids, e.block_size)
                elif kind == "BlockRemoved":
                    index.removed("e", e.block_hashes)
        index_only.append((time.process_time() - start) / events * 1e6)
    ctx.term()
    stored = sum(len(e.block_hashes) for b in decoded for e in b if type(e).__name__ == "BlockStored")
    return {"batches": len(payloads), "events": events, "blocks_stored": stored,
            "us_per_event": _spread(whole), "us_per_event_index_only": _spread(index_only)}


def fleet_memory(seed: int) -> float:
    """Megabytes the index allocates to hold FLEET_BLOCKS blocks over FLEET_BACKENDS backends."""
    rng = random.Random(seed)
    names = [f"b{k}" for k in range(FLEET_BACKENDS)]
    events = []
    for name in names:
        left, parent = FLEET_BLOCKS // FLEET_BACKENDS, None
        while left:
            n = min(left, rng.randint(1, 16))
            if rng.random() < 0.3:
                parent = None  # a new prompt
            hashes = [rng.getrandbits(64) for _ in range(n)]
            events.append((name, hashes, parent, [rng.randrange(150_000) for _ in range(n * BLOCK_TOKENS)]))
            parent, left = hashes[-1], left - n
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = KVIndex(dict.fromkeys(names, FLEET_BLOCKS))
    for name, hashes, parent, ids in events:
        index.stored(name, hashes, parent, ids, BLOCK_TOKENS)
    del events
    gc.collect()
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert sum(index.blocks(n) for n in names) == FLEET_BLOCKS
    return size / 1e6


def chain_cost(prompt_tokens: int, repeats: int) -> dict[str, float]:
    """Microseconds to compute one prompt's block chain."""
    prompt = ("The green boat left the quiet harbour before dawn. " * prompt_tokens)[:prompt_tokens * 4]
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(100):
            prompt_chain(prompt, BLOCK_TOKENS)
        samples.append((time.process_time() - start) / 100 * 1e6)
    return _spread(samples)


def run(seed: int = 0, repeats: int = 5, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The report: update cost, fleet memory, prompt chain cost, and whether the targets hold."""
    step = on_step or (lambda _: None)
    payloads = engine_payloads(seed)
    step("engine events")
    update = update_cost(payloads, repeats)
    step("update cost")
    memory = _spread([fleet_memory(seed + r) for r in range(repeats)])
    step("memory")
    chains = {f"{n} tokens": chain_cost(n, repeats) for n in (1000, 4000)}
    step("prompt chains")
    return {"benchmark": "kv-index", "seed": seed, "repeats": repeats, "update": update,
            "memory_mb": memory, "fleet": {"backends": FLEET_BACKENDS, "blocks": FLEET_BLOCKS},
            "prompt_chain_us": chains,
            "targets": {"us_per_event": UPDATE_TARGET_US, "memory_mb": MEMORY_TARGET_MB},
            "targets_met": {"update <= 20 us/event": update["us_per_event"]["median"] <= UPDATE_TARGET_US,
                            "100k blocks <= 50 MB": memory["median"] <= MEMORY_TARGET_MB}}
