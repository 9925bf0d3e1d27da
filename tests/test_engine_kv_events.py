"""The simulated engine's KV events: vLLM's wire format, read back by a subscriber built only from
vLLM's published schema (not mercato's structs), and events that describe the pool exactly."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import httpx
import pytest
import zmq

from mercato.engine import EngineCore, get_profile
from mercato.engine.core import EngineRequest
from mercato.engine.kv_cache import BLOCK_TOKENS
from mercato.engine.kv_events import KVEventLog
from mercato.engine.tokenizer import token_ids
from mercato.gateway.live.fleet import EngineFleet
from vllm_kv_schema import END_SEQ, VLLM_DECODER, AllBlocksCleared, BlockStored

# ---- token ids -------------------------------------------------------------------------------


def test_token_ids_are_pinned_and_the_same_in_every_process():
    text = "abcdabce plus a tail" * 7 + "xy"
    assert token_ids("abcdabce").tolist() == [617577276, 405526118]  # the documented definition
    assert token_ids("").tolist() == []
    assert len(token_ids(text)) == -(-len(text) // 4)
    assert token_ids("a").tolist() != token_ids("a\x00").tolist()  # a short last piece is its own token
    assert all(0 <= t < 2**31 for t in token_ids(text + "😀\ud800").tolist())
    code = f"from mercato.engine.tokenizer import token_ids; print(token_ids({text!r}).tolist())"
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert out.strip() == str(token_ids(text).tolist())


# ---- events describe the pool ----------------------------------------------------------------


def _dialogue_prompts(rng: random.Random, n: int) -> list[str]:
    prompts = []
    for d in range(n):
        history = f"<|system|>\nContext {d}: " + " ".join(rng.choice(["boat", "harbour", "keeper", "dawn"])
                                                        for _ in range(rng.randint(20, 200)))
        for turn in range(rng.randint(1, 4)):
            history += f"<|end|>\n<|user|>\nquestion {turn}?<|end|>\n"
            prompts.append(history)
    rng.shuffle(prompts)
    return prompts


def test_events_replayed_in_order_rebuild_the_pool_exactly():
    log = KVEventLog(BLOCK_TOKENS)
    core = EngineCore(get_profile("qwen3-4b"), max_num_seqs=4, num_gpu_blocks=160, max_model_len=2048,
                      kv_events=log)
    cached: set[int] = set()
    stored = removed = 0
    for i, prompt in enumerate(_dialogue_prompts(random.Random(3), 40)):
        core.submit(EngineRequest(f"r{i}", prompt, max_tokens=48), now=core.clock)
        core.advance(core.clock + 0.2)
        for event in log.take():
            if type(event).__name__ == "BlockStored":
                assert len(event.token_ids) == BLOCK_TOKENS * len(event.block_hashes)
                assert event.parent_block_hash is None or event.parent_block_hash in cached
                assert cached.isdisjoint(event.block_hashes)
                cached.update(event.block_hashes)
                stored += len(event.block_hashes)
            else:
                assert set(event.block_hashes) <= cached
                cached.difference_update(event.block_hashes)
                removed += len(event.block_hashes)
        assert len(cached) == core.pool.num_cached
        assert all(core.pool.cached_prefix([h]) == 1 for h in cached)
    assert stored > core.pool.num_blocks and removed > 0  # the pool was under pressure


def test_reset_prefix_cache_is_refused_while_requests_hold_blocks_then_clears():
    log = KVEventLog(BLOCK_TOKENS)
    core = EngineCore(get_profile("qwen3-4b"), kv_events=log)
    core.submit(EngineRequest("a", "x" * 300, max_tokens=8), now=0.0)
    assert not core.reset_prefix_cache()
    core.advance(1e9)
    log.take()
    assert core.pool.num_cached > 0 and core.reset_prefix_cache()
    assert core.pool.num_cached == 0
    assert [type(e).__name__ for e in log.take()] == ["AllBlocksCleared"]


# ---- the wire, through `mercato engine serve --kv-events` ----------------------------------


def _receive(sub: zmq.Socket, timeout_s: float = 5.0) -> list[list[bytes]]:
    """Every message that arrives until the socket stays quiet for 0.3 s."""
    messages = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and sub.poll(300 if messages else 2000):
        messages.append(sub.recv_multipart())
    return messages


def test_a_subscriber_written_from_vllms_schema_reads_the_simulator():
    ctx = zmq.Context()
    with EngineFleet(["qwen3-4b"], speed=0.0, kv_events=True) as fleet:
        engine = fleet.engines[0]
        source = engine.kv_events
        assert source is not None and fleet.backend_configs()[0].kv_events == source
        sub = ctx.socket(zmq.SUB)
        sub.connect(source.endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        time.sleep(0.3)  # PUB drops what is sent before the subscription arrives
        system = {"role": "system", "content": "The green boat left the quiet harbour before dawn. " * 12}
        messages = [system, {"role": "user", "content": "Who left?"}]
        with httpx.Client(base_url=engine.url, timeout=30) as client:
            for turn in range(2):
                reply = client.post("/chat/completions", json={"model": "qwen3-4b", "messages": messages,
                                                               "max_tokens": 40}).json()
                messages += [reply["choices"][0]["message"], {"role": "user", "content": f"And {turn}?"}]
            wire = _receive(sub)
            assert client.post(engine.url.removesuffix("/v1") + "/reset_prefix_cache").status_code == 200
            wire += _receive(sub)

        assert [len(m) for m in wire] == [3] * len(wire)
        assert all(topic == b"" for topic, _, _ in wire)
        assert [int.from_bytes(seq, "big") for _, seq, _ in wire] == list(range(len(wire)))
        batches = [VLLM_DECODER.decode(payload) for _, _, payload in wire]
        assert all(b.data_parallel_rank == 0 for b in batches)
        events = [e for b in batches for e in b.events]
        stores = [e for e in events if isinstance(e, BlockStored)]
        assert stores[0].parent_block_hash is None
        assert all(e.block_size == 16 and e.medium == "GPU" and e.lora_id is None for e in stores)
        assert all(len(e.token_ids) == 16 * len(e.block_hashes) for e in stores)
        seen = [h for e in stores for h in e.block_hashes]
        assert len(seen) == len(set(seen)) and all(e.parent_block_hash in seen for e in stores[1:])
        assert isinstance(events[-1], AllBlocksCleared)

        replay = ctx.socket(zmq.DEALER)
        replay.connect(str(source.replay_endpoint))
        replay.send_multipart([b"", (1).to_bytes(8, "big")])
        replayed = []
        while replay.poll(5000):
            _, seq, payload = replay.recv_multipart()
            if seq == END_SEQ:
                break
            replayed.append((seq, payload))
        assert replayed == [(seq, payload) for _, seq, payload in wire[1:]]
    ctx.destroy(linger=0)


@pytest.mark.parametrize("flags", [["--kv-events-replay", "tcp://127.0.0.1:1"], ["--kv-events", "nonsense"]])
def test_bad_kv_event_flags_are_refused(flags):
    out = subprocess.run([sys.executable, "-m", "mercato", "engine", "serve", "--profile", "qwen3-4b",
                          "--port", "1", *flags], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "kv-events" in (out.stderr + out.stdout).lower().replace("_", "-")
