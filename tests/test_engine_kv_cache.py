"""Tokenizer prefix stability, prompt rendering, block hash chains and the block pool's bookkeeping."""

from __future__ import annotations

import random
from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mercato.engine.chat import render_chat
from mercato.engine.kv_cache import BLOCK_CHARS, ROOT_HASH, BlockPool, ChainCache, block_hashes
from mercato.engine.tokenizer import CHARS_PER_TOKEN, count_tokens, truncate_tokens

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=400)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                           "content": texts}), min_size=1, max_size=5)


@given(texts, texts)
def test_tokenizer_is_prefix_stable(text, more):
    n = count_tokens(text)
    assert n == -(-len(text) // CHARS_PER_TOKEN)
    extended = text + more
    assert count_tokens(extended) >= n
    # every complete token (and so every complete block) of a text survives any extension
    assert truncate_tokens(extended, len(text) // CHARS_PER_TOKEN) == truncate_tokens(text, n)[
        : len(text) // CHARS_PER_TOKEN * CHARS_PER_TOKEN]
    full = len(text) // BLOCK_CHARS
    assert block_hashes(text, 0, full, ROOT_HASH) == block_hashes(extended, 0, full, ROOT_HASH)


@given(messages, messages)
def test_rendered_turn_is_a_byte_prefix_of_the_next(history, appended):
    assert render_chat(history + appended).startswith(render_chat(history))
    assert render_chat(history + appended).encode().startswith(render_chat(history).encode())


def test_render_chat_rejects_malformed_messages():
    with pytest.raises(ValueError, match="list"):
        render_chat("hello")
    with pytest.raises(ValueError, match="role"):
        render_chat([{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match="content"):
        render_chat([{"role": "user", "content": 3}])
    with pytest.raises(ValueError, match="object"):
        render_chat(["hi"])
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert render_chat(parts) == render_chat([{"role": "user", "content": "ab"}])


def test_hash_chain_names_prefixes_not_block_contents():
    block = "z" * BLOCK_CHARS
    a = block_hashes("a" * BLOCK_CHARS + block, 0, 2, ROOT_HASH)
    b = block_hashes("b" * BLOCK_CHARS + block, 0, 2, ROOT_HASH)
    assert a[0] != b[0] and a[1] != b[1]  # same second block, different prefix


@given(st.lists(st.integers(0, 2000), min_size=1, max_size=12), st.integers(0, 3))
def test_chain_cache_returns_exactly_the_plain_hashes(lengths, seed):
    rng = random.Random(seed)
    base = "".join(rng.choice("ab ") for _ in range(3000))
    cache = ChainCache(capacity=4, key_chars=64, per_key=2)
    for n in lengths:
        text = base[:n] + rng.choice(["", "x", "tail text"])
        expected = block_hashes(text, 0, len(text) // BLOCK_CHARS, ROOT_HASH)
        assert cache.hashes(text) == expected
        cache.remember(text, expected)


class ReferencePool:
    """A direct transcription of the pool's rules: linear walks, explicit LRU list."""

    def __init__(self, num_blocks: int) -> None:
        self.num_blocks, self.used = num_blocks, 0
        self.refs: dict[int, int] = {}
        self.lru: OrderedDict[int, None] = OrderedDict()

    def acquire(self, hashes: list[int], total: int) -> tuple[int, list[int]] | None:
        shared = 0
        while shared < len(hashes) and hashes[shared] in self.refs:
            shared += 1
        revived = sum(1 for h in hashes[:shared] if self.refs[h] == 0)
        if total - shared + revived > self.num_blocks - self.used:
            return None
        for h in hashes[:shared]:
            if self.refs[h] == 0:
                del self.lru[h]
            self.refs[h] += 1
        self.used += revived
        for _ in range(max(0, (total - shared) - (self.num_blocks - self.used - len(self.lru)))):
            del self.refs[self.lru.popitem(last=False)[0]]
        self.used += total - shared
        for h in hashes[shared:]:
            self.refs[h] = 1
        return shared, list(hashes)

    def release(self, held: list[int], total: int, filled: list[int]) -> None:
        for h in filled[: total - len(held)]:
            if h in self.refs:
                break
            self.refs[h] = 1
            held.append(h)
        self.used -= total - len(held)
        for h in reversed(held):
            self.refs[h] -= 1
            if self.refs[h] == 0:
                self.lru[h] = None
                self.used -= 1


@given(st.integers(0, 10_000), st.integers(24, 80))
def test_pool_matches_the_reference_and_keeps_cached_prefixes_closed(seed, num_blocks):
    rng = random.Random(seed)
    pool, ref = BlockPool(num_blocks), ReferencePool(num_blocks)
    chains = [[] for _ in range(6)]
    running: list[tuple[list[int], list[int], int]] = []
    for _ in range(60):
        if running and (rng.random() < 0.5 or len(running) > 3):
            held, ref_held, total = running.pop(rng.randrange(len(running)))
            filled = [rng.getrandbits(60) for _ in range(rng.randint(0, 2))]
            pool.release(held, total, filled)
            ref.release(ref_held, total, filled)
        else:
            chain = chains[rng.randrange(len(chains))]
            if rng.random() < 0.3:
                chain[:] = chain[: rng.randint(0, len(chain))]  # a branch off a shared prefix
            chain.extend(rng.getrandbits(60) for _ in range(rng.randint(1, 6)))
            total = len(chain) + rng.randint(0, 3)
            if total > num_blocks:
                continue
            got, expected = pool.acquire(list(chain), total), ref.acquire(list(chain), total)
            assert (got is None) == (expected is None)
            assert got is None or got[0] == expected[0]
            if got is not None:
                running.append((got[1], expected[1], total))
        assert pool.used == ref.used
        assert pool.num_cached == len(ref.refs)
        for chain in chains:  # invariant: the cached blocks of any chain form a prefix of it
            cached = [h in ref.refs for h in chain]
            assert cached == sorted(cached, reverse=True)
            assert pool.cached_prefix(chain) == sum(cached)


def test_pool_refuses_what_it_cannot_hold_and_evicts_tail_blocks_first():
    pool = BlockPool(8)
    assert pool.acquire([1, 2, 3], 9) is None and pool.used == 0
    _, held = pool.acquire([1, 2, 3], 4)
    pool.release(held, 4, [4])
    assert pool.used == 0 and pool.num_cached == 4
    _, other = pool.acquire([10, 11, 12, 13, 14], 6)  # 4 empty blocks, then evict 2 LRU blocks
    assert pool.cached_prefix([1, 2, 3, 4]) == 2  # blocks 4 and 3 (the tail) went first
    pool.release(other, 6, [])
    with pytest.raises(ValueError):
        BlockPool(0)
