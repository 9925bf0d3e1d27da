"""Paged KV cache with automatic prefix caching, modelled on vLLM's block manager.

A block holds 16 tokens. A *full* block is named by a hash chained over its parent's hash and
its own content, so equal hashes mean equal prefixes. Blocks held by running sequences are
referenced; a block whose last reference goes stays cached in an LRU list and is either reused
when a later prompt hits it or overwritten (evicted) when the pool needs a block and no
never-used one is left. A sequence frees its blocks tail first, so a prompt's last blocks are
evicted before its first ones.

Invariant: the parent of every cached block is cached. A block is only hashed while the
sequence that fills it references the parent; a sequence frees children before parents, and a
child can only be hit through its parent. So the cached blocks of a prompt are always a prefix
of its blocks, and the cached prefix is found by binary search rather than a walk.

Hashes are Python's built-in ``hash`` of ``(parent_hash, block_text)``: 64 bits, so a collision
among the few million blocks of a long run has a probability below 1e-6; the hash differs between
processes, but only equality is ever used, so results do not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from mercato.engine.tokenizer import CHARS_PER_TOKEN

BLOCK_TOKENS = 16
BLOCK_CHARS = BLOCK_TOKENS * CHARS_PER_TOKEN
ROOT_HASH = 0


def block_hashes(text: str, first: int, stop: int, parent: int) -> list[int]:
    """Chained hashes of full blocks ``first .. stop-1`` of ``text`` after block ``parent``."""
    out = []
    for start in range(first * BLOCK_CHARS, stop * BLOCK_CHARS, BLOCK_CHARS):
        parent = hash((parent, text[start:start + BLOCK_CHARS]))
        out.append(parent)
    return out


def blocks_for(tokens: int) -> int:
    """Blocks needed to hold ``tokens`` tokens."""
    return -(-tokens // BLOCK_TOKENS)


class ChainCache:
    """Block hashes of recently finished sequences, so the next turn of a dialogue only hashes
    what it appended. Keyed by the text's first ``key_chars`` characters; a bounded LRU.

    Purely an optimisation: :meth:`hashes` returns exactly what :func:`block_hashes` would.
    """

    __slots__ = ("_entries", "capacity", "key_chars", "per_key")

    def __init__(self, capacity: int = 4096, key_chars: int = 1024, per_key: int = 4) -> None:
        self.capacity = capacity
        self.key_chars = key_chars
        self.per_key = per_key
        self._entries: OrderedDict[int, list[tuple[str, list[int]]]] = OrderedDict()

    def hashes(self, text: str) -> list[int]:
        """Chained hashes of all full blocks of ``text``."""
        stop = len(text) // BLOCK_CHARS
        known: list[int] = []
        if len(text) >= self.key_chars:
            for prefix, prefix_hashes in self._entries.get(hash(text[:self.key_chars]), ()):
                if len(prefix_hashes) > len(known) and text.startswith(prefix):
                    known = prefix_hashes
        if len(known) >= stop:
            return known[:stop]
        return known + block_hashes(text, len(known), stop, known[-1] if known else ROOT_HASH)

    def remember(self, text: str, hashes: list[int]) -> None:
        """Record the hashes of ``text``'s full blocks, replacing any entry it extends."""
        if len(text) < self.key_chars or not hashes:
            return
        key = hash(text[:self.key_chars])
        prefix = text[:len(hashes) * BLOCK_CHARS]
        entries = self._entries.get(key)
        if entries is None:
            self._entries[key] = [(prefix, hashes)]
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return
        self._entries.move_to_end(key)
        kept = [e for e in entries if not prefix.startswith(e[0])][-(self.per_key - 1):]
        kept.append((prefix, hashes))
        self._entries[key] = kept


class BlockPool:
    """A fixed number of KV blocks: reference counts, the hash index and the LRU of free ones."""

    __slots__ = ("_free_cached", "_on_evict", "_refs", "num_blocks", "used")

    def __init__(self, num_blocks: int, on_evict: Callable[[list[int]], None] | None = None) -> None:
        """``on_evict`` hears the hashes of every batch of evicted blocks (the KV events)."""
        if num_blocks < 1:
            raise ValueError(f"the KV pool needs at least one block, got {num_blocks}")
        self.num_blocks = num_blocks
        self.used = 0  # blocks referenced by running sequences
        self._refs: dict[int, int] = {}  # hash -> reference count, for every cached block
        self._free_cached: OrderedDict[int, None] = OrderedDict()  # cached, unreferenced: LRU first
        self._on_evict = on_evict

    @property
    def num_cached(self) -> int:
        """Blocks holding a hashed prefix block, referenced or not."""
        return len(self._refs)

    def cached_prefix(self, hashes: list[int]) -> int:
        """How many leading blocks of ``hashes`` are cached (binary search; see the invariant)."""
        refs = self._refs
        lo, hi = 0, len(hashes)
        if hi and hashes[hi - 1] in refs:
            return hi
        while lo < hi:
            mid = (lo + hi) // 2
            if hashes[mid] in refs:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def acquire(self, hashes: list[int], total_blocks: int) -> tuple[int, list[int]] | None:
        """Reference a new sequence's ``total_blocks`` blocks; ``hashes`` are its full prompt blocks.

        The cached prefix of ``hashes`` is shared, the rest are fresh blocks (evicting LRU ones
        when no never-used block is left) and its full prompt blocks get hashed. Returns
        ``(cached prefix length, held hashes)`` or None, with nothing changed, when the pool
        cannot supply the blocks.
        """
        refs = self._refs
        shared = self.cached_prefix(hashes)
        fresh = total_blocks - shared
        if fresh + shared > self.num_blocks - self.used:  # not certain to fit: count exactly
            revived = sum(1 for h in hashes[:shared] if not refs[h])
            if fresh + revived > self.num_blocks - self.used:
                return None
        free_cached = self._free_cached
        revived = 0
        for h in hashes[:shared]:
            r = refs[h]
            if not r:
                del free_cached[h]
                revived += 1
            refs[h] = r + 1
        for h in hashes[shared:]:
            refs[h] = 1
        self.used += revived
        self._evict(fresh - (self.num_blocks - self.used - len(free_cached)))
        self.used += fresh
        return shared, hashes[:]

    def release(self, held: list[int], total_blocks: int, filled: list[int]) -> int:
        """Drop a finished sequence's references; ``filled``: hashes of its full decode blocks.

        Filled blocks are cached up to the first one already cached elsewhere (keeping the
        invariant); returns how many were. Blocks are freed tail first, so the LRU evicts a
        sequence's last blocks first.
        """
        refs = self._refs
        prompt_blocks = len(held)
        for h in filled[:total_blocks - prompt_blocks]:
            if h in refs:
                break
            refs[h] = 1
            held.append(h)
        cached = len(held) - prompt_blocks
        free_cached = self._free_cached
        freed = total_blocks - len(held)
        for h in reversed(held):
            r = refs[h] - 1
            refs[h] = r
            if not r:
                free_cached[h] = None
                freed += 1
        self.used -= freed
        return cached

    def reset(self) -> bool:
        """Forget every cached block, as vLLM's ``reset_prefix_cache``: only when none is referenced."""
        if self.used:
            return False
        self._refs.clear()
        self._free_cached.clear()
        return True

    def _evict(self, count: int) -> None:
        """Overwrite the ``count`` least recently freed cached blocks."""
        free_cached, refs = self._free_cached, self._refs
        evicted = [free_cached.popitem(last=False)[0] for _ in range(count)]
        for h in evicted:
            del refs[h]
        if evicted and self._on_evict is not None:
            self._on_evict(evicted)

