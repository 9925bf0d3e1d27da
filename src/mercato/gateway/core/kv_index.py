"""Exact prefix-cache state of the backends that publish KV events: which blocks each one holds.

vLLM's events name blocks by the engine's own hashes, which depend on its hash function and seed;
a request's blocks must be found without either. So every block is also keyed by a chain the
gateway computes from token ids alone, ``key_i = hash((key_{i-1}, *ids_i))`` over block ``i``'s
token ids, from :data:`ROOT`: a ``BlockStored`` event carries the token ids of the blocks it
stores and the engine hash of their parent, whose key the index already holds. A request's chain
is computed the same way from the engine's own rendering and token ids, per backend
(:mod:`mercato.gateway.core.prompt_blocks`: the simulated engine's, or a Hugging Face model's
tokenizer and chat template for a real vLLM).

The index is trusted for a backend only while its event stream is unbroken since a point where the
cache was known (:meth:`KVIndex.set_exact`, decided by the subscriber). Memory is bounded: more
blocks than a backend's bound means removals were missed (or the bound is below the engine's
pool), so that backend's blocks are dropped and :class:`IndexFull` tells the subscriber.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from mercato.gateway.core.prompt_blocks import ROOT, SIMULATED, PromptBlocks, chain


class IndexFull(Exception):
    """A backend passed its bound; its blocks were dropped and the index no longer mirrors it."""


class _Blocks:
    """One backend: engine hash -> key of every block it holds, and how many blocks hold each key."""

    __slots__ = ("block_size", "exact", "held", "keys", "max_blocks")

    def __init__(self, max_blocks: int) -> None:
        if max_blocks < 1:
            raise ValueError(f"max_blocks must be >= 1, got {max_blocks}")
        self.max_blocks = max_blocks
        self.keys: dict[Hashable, int] = {}
        self.held: dict[int, int] = {}  # blocks differing only in what the keys ignore (LoRA) share one
        self.block_size: int | None = None
        self.exact = False


class KVIndex:
    """Per backend, the blocks its engine reported stored and not yet removed."""

    def __init__(self, max_blocks: Mapping[str, int],
                 prompt_blocks: Mapping[str, PromptBlocks] | None = None) -> None:
        """``max_blocks``: the backends to follow, each with the most blocks to hold for it;
        ``prompt_blocks``: how each one's engine tokenizes a request (default: the simulated engine)."""
        self._backends = {name: _Blocks(bound) for name, bound in max_blocks.items()}
        self._prompt_blocks = {name: (prompt_blocks or {}).get(name, SIMULATED) for name in max_blocks}
        self.orphans = 0  # stored blocks whose parent the index did not hold (skipped)
        self.overflows = 0  # times a backend passed its bound (IndexFull)

    @property
    def backends(self) -> list[str]:
        """The backends whose events the index follows."""
        return list(self._backends)

    def prompt_blocks(self, backend: str) -> PromptBlocks:
        """How ``backend``'s engine turns a request into the blocks its events name."""
        return self._prompt_blocks[backend]

    def stored(self, backend: str, hashes: Sequence[Hashable], parent: Hashable | None,
               ids: Sequence[int], block_size: int) -> int:
        """Blocks ``hashes`` holding ``ids`` were cached after ``parent``; returns how many were added.

        ValueError when the token ids do not fill the blocks exactly (a malformed event);
        IndexFull when the backend passed its bound.
        """
        if block_size < 1 or len(ids) != len(hashes) * block_size:
            raise ValueError(f"{len(ids)} token ids do not fill {len(hashes)} blocks of {block_size}")
        b = self._backends[backend]
        if parent is None:
            start = ROOT
        elif parent in b.keys:
            start = b.keys[parent]
        else:
            self.orphans += len(hashes)
            return 0
        b.block_size = block_size
        keys, held = b.keys, b.held
        added = 0
        for h, key in zip(hashes, chain(ids, block_size, start), strict=True):
            if h in keys:
                continue
            keys[h] = key
            held[key] = held.get(key, 0) + 1
            added += 1
        if len(keys) > b.max_blocks:
            self.overflows += 1
            self.cleared(backend)
            raise IndexFull(f"{backend}: more than {b.max_blocks} blocks")
        return added

    def removed(self, backend: str, hashes: Sequence[Hashable]) -> int:
        """Blocks ``hashes`` were evicted; returns how many the index held."""
        b = self._backends[backend]
        keys, held = b.keys, b.held
        dropped = 0
        for h in hashes:
            key = keys.pop(h, None)
            if key is None:
                continue
            dropped += 1
            left = held[key] - 1
            if left:
                held[key] = left
            else:
                del held[key]
        return dropped

    def cleared(self, backend: str) -> None:
        """The backend's cache is empty (reset, restart) or no longer known."""
        b = self._backends[backend]
        b.keys.clear()
        b.held.clear()

    def set_exact(self, backend: str, exact: bool) -> None:
        """Whether the index mirrors the backend's cache (its stream unbroken since a known state)."""
        self._backends[backend].exact = exact

    def exact(self, backend: str) -> bool:
        """True while routing may trust the index for ``backend``."""
        b = self._backends.get(backend)
        return b is not None and b.exact

    def block_size(self, backend: str) -> int | None:
        """Tokens per block of the backend's engine (None before its first stored block)."""
        return self._backends[backend].block_size

    def blocks(self, backend: str) -> int:
        """Blocks the index holds for the backend."""
        return len(self._backends[backend].keys)

    def cached_blocks(self, backend: str, keys: Sequence[int]) -> int:
        """How many leading blocks of a prompt's chain ``keys`` the backend holds."""
        held = self._backends[backend].held
        n = 0
        for key in keys:
            if key not in held:
                break
            n += 1
        return n
