"""The exact KV index: fed the simulated engine's events, it predicts the engine's prefix hits to
the token, and it is the affinity every policy sees for backends in sync (the ledger elsewhere)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mercato.engine import EngineCore, get_profile
from mercato.engine.chat import GENERATION_PROMPT, render_chat
from mercato.engine.core import EngineRequest
from mercato.engine.kv_cache import BLOCK_TOKENS
from mercato.engine.kv_events import KVEventLog
from mercato.engine.tokenizer import token_ids
from mercato.gateway.core.affinity import CacheAffinity
from mercato.gateway.core.kv_index import IndexFull, KVIndex
from mercato.gateway.core.prefix import PrefixLedger
from mercato.gateway.core.prompt_blocks import chain, prompt_chain
from mercato.gateway.core.router import Router
from mercato.gateway.core.types import BackendSpec, BuyerReport, RouteRequest

WORDS = ["boat", "harbour", "keeper", "dawn", "quiet", "green", "left", "before"]


def feed(index: KVIndex, backend: str, events: list) -> None:
    for event in events:
        kind = type(event).__name__
        if kind == "BlockStored":
            index.stored(backend, event.block_hashes, event.parent_block_hash, event.token_ids,
                         event.block_size)
        elif kind == "BlockRemoved":
            index.removed(backend, event.block_hashes)
        else:
            index.cleared(backend)


def test_the_index_predicts_every_prefix_hit_of_an_engine_under_eviction_pressure():
    rng = random.Random(5)
    log = KVEventLog(BLOCK_TOKENS)
    core = EngineCore(get_profile("qwen3-4b"), max_num_seqs=2, num_gpu_blocks=200, max_model_len=3000,
                      kv_events=log)
    index = KVIndex({"e": 10_000})
    histories = {d: [{"role": "system", "content": " ".join(rng.choices(WORDS, k=rng.randint(30, 250)))}]
                 for d in range(12)}
    hits = misses = 0
    for i in range(80):
        d = rng.randrange(12)
        messages = histories[d] + [{"role": "user", "content": f"question {i}?"}]
        prompt = render_chat(messages)
        keys = prompt_chain(prompt, BLOCK_TOKENS)
        predicted = index.cached_blocks("e", keys) * BLOCK_TOKENS
        core.submit(EngineRequest(f"r{i}", prompt, max_tokens=40), now=core.clock)
        feed(index, "e", log.take())  # admission: what it stored, what that evicted
        (result,) = core.advance(core.clock + 1e6)
        feed(index, "e", log.take())  # finish: the reply's filled blocks
        assert result.cached_tokens == predicted
        hits += predicted > 0
        misses += predicted == 0 and i > 12
        histories[d] = [*messages, {"role": "assistant", "content": result.text}]
    assert hits > 20 and misses > 5  # both cases met: the cache was under pressure
    assert index.blocks("e") == core.pool.num_cached


def test_a_prompt_chain_is_the_chain_over_the_engines_token_ids():
    prompt = "x" * 150
    text = prompt + GENERATION_PROMPT
    blocks = (-(-len(text) // 4) - 1) // 16
    assert prompt_chain(prompt, 16) == chain(token_ids(text)[:blocks * 16].tolist(), 16)
    assert len(prompt_chain("short", 16)) == 0
    assert chain(list(range(40)), 16) == chain(list(range(32)), 16)  # only full blocks
    assert chain(list(range(32)), 16)[1] == chain(list(range(16, 32)), 16, chain(list(range(16)), 16)[0])[0]


def test_index_bookkeeping_removals_shared_keys_orphans_and_malformed_events():
    index = KVIndex({"a": 100})
    ids = list(range(32))
    assert index.stored("a", [1, 2], None, ids, 16) == 2
    assert index.stored("a", [9], None, ids[:16], 16) == 1  # another engine hash, same tokens (LoRA)
    keys = chain(ids, 16)
    assert index.cached_blocks("a", keys) == 2 and index.blocks("a") == 3
    assert index.removed("a", [1, 404]) == 1
    assert index.cached_blocks("a", keys) == 2  # block 9 still holds the first key
    assert index.removed("a", [9]) == 1 and index.cached_blocks("a", keys) == 0
    assert index.stored("a", [7], 12345, ids[:16], 16) == 0 and index.orphans == 1
    with pytest.raises(ValueError, match="do not fill"):
        index.stored("a", [5], None, ids[:15], 16)
    index.cleared("a")
    assert index.blocks("a") == 0


def test_a_backend_past_its_bound_is_dropped():
    index = KVIndex({"a": 3})
    index.stored("a", [1, 2, 3], None, list(range(48)), 16)
    with pytest.raises(IndexFull):
        index.stored("a", [4], 3, list(range(16)), 16)
    assert index.blocks("a") == 0 and index.overflows == 1


def _spec(name: str) -> BackendSpec:
    return BackendSpec(name, "m", 4, 1e-6, 1e-7, 2e-6)


def _request(prompt: str, session: str = "s") -> RouteRequest:
    return RouteRequest(request_id="r", prompt=prompt, prompt_tokens=len(prompt) // 4, max_tokens=16,
                        session_id=session, turn=1, domain=None, source=None, buyer="b",
                        report=BuyerReport(), arrival=0.0)


def test_affinity_comes_from_the_index_only_where_it_is_exact():
    prompt = render_chat([{"role": "user", "content": "w" * 600}])
    keys = prompt_chain(prompt, 16)
    ids = token_ids(prompt[:len(keys) * 64]).tolist()
    index = KVIndex({"exact": 100, "stale": 100})
    for name in ("exact", "stale"):
        index.stored(name, list(range(len(keys))), None, ids, 16)
    index.set_exact("exact", True)
    ledger = PrefixLedger(["exact", "stale", "plain"])
    for name in ("stale", "plain"):
        ledger.observe(name, "s", prompt[:300], affinity=0.0, prompt_tokens=1, cached_tokens=0)
    out = np.zeros(3)
    CacheAffinity(["exact", "stale", "plain"], ledger, index).affinity_row(_request(prompt), out)
    assert out[0] == pytest.approx(len(keys) * 64 / len(prompt))
    assert out[1] == out[2] == pytest.approx(300 / len(prompt))  # the ledger's guess

    router = Router([_spec("exact"), _spec("stale"), _spec("plain")], "cache_aware", kv_index=index)
    assert router.snapshot()["kv_exact"] == ["exact"]
    assert router.market([_request(prompt)]).context.affinity[0].tolist() == [out[0], 0.0, 0.0]
    index.set_exact("exact", False)
    assert router.market([_request(prompt)]).context.affinity[0].tolist() == [0.0, 0.0, 0.0]
