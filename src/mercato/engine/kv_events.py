"""vLLM's KV-cache events, the wire format both the simulated engine and the gateway speak.

vLLM started with ``--kv-events-config`` publishes, after each scheduler step, one ``EventBatch``
of the blocks its prefix cache stored and evicted, msgpack-encoded by msgspec. The structs below
follow ``vllm/distributed/kv_events.py`` field for field. Two layouts are in use: vLLM's releases
encode every struct ``array_like`` (a batch is ``[ts, events, data_parallel_rank]``, an event
``["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium,
lora_name]``), while newer builds send maps with a ``type`` tag. :data:`ARRAY` is the layout the
simulator publishes, every field written as vLLM writes it; reading, :data:`ARRAY` and :data:`MAP`
take either layout, the fields older releases lacked being optional and later ones ignored.

:class:`KVEventLog` is what :class:`~mercato.engine.core.EngineCore` fills as its pool stores and
evicts blocks; the publisher drains it once per engine step into one batch.
"""

# No ``from __future__ import annotations``: msgspec resolves the structs' annotations at class
# creation, and the structs are local to ``_schema``.
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from mercato.engine.tokenizer import CHARS_PER_TOKEN, token_ids

MEDIUM_GPU = "GPU"
BlockHash = int | bytes  # vLLM's ExternalBlockHash: an int, or the raw digest


@dataclass(frozen=True)
class Schema:
    """One layout's structs: the batch, the three events and their tagged union."""

    batch: type[Any]
    stored: type[Any]
    removed: type[Any]
    cleared: type[Any]

    @property
    def event(self) -> Any:
        """The tagged union of the three events (what a batch's ``events`` holds)."""
        return self.stored | self.removed | self.cleared


def _schema(array_like: bool) -> Schema:
    """vLLM's structs in one layout; the fields later releases added default to None, and are still
    written (vLLM's own decoder requires them)."""

    class KVCacheEvent(msgspec.Struct, array_like=array_like, gc=False, tag=True):
        """Base of the tagged events: the tag is the class name."""

    class BlockStored(KVCacheEvent):
        block_hashes: list[BlockHash]
        parent_block_hash: BlockHash | None
        token_ids: list[int]
        block_size: int
        lora_id: int | None = None
        medium: str | None = None
        lora_name: str | None = None

    class BlockRemoved(KVCacheEvent):
        block_hashes: list[BlockHash]
        medium: str | None = None

    class AllBlocksCleared(KVCacheEvent):
        pass

    class EventBatch(msgspec.Struct, array_like=array_like, gc=False):
        ts: float
        events: list[BlockStored | BlockRemoved | AllBlocksCleared]
        data_parallel_rank: int | None = None

    return Schema(EventBatch, BlockStored, BlockRemoved, AllBlocksCleared)


ARRAY = _schema(array_like=True)
MAP = _schema(array_like=False)


class KVEventLog:
    """The events of one engine since the last :meth:`take`, in the order they happened."""

    __slots__ = ("_events", "block_size")

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._events: list[Any] = []

    def stored(self, hashes: list[int], parent: int | None, text: str, first_block: int) -> None:
        """Blocks ``first_block ..`` of ``text`` entered the prefix cache under ``hashes``."""
        if not hashes:
            return
        chars = self.block_size * CHARS_PER_TOKEN
        start = first_block * chars
        ids = token_ids(text[start:start + len(hashes) * chars]).tolist()
        self._events.append(ARRAY.stored(hashes, parent, ids, self.block_size, None, MEDIUM_GPU, None))

    def removed(self, hashes: list[int]) -> None:
        """Cached blocks were evicted."""
        if hashes:
            self._events.append(ARRAY.removed(hashes, MEDIUM_GPU))

    def cleared(self) -> None:
        """The whole prefix cache was reset."""
        self._events.append(ARRAY.cleared())

    def take(self) -> list[Any]:
        """The events logged since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def __len__(self) -> int:
        return len(self._events)


def encode_batch(events: list[Any], rank: int = 0, ts: float | None = None) -> bytes:
    """One ``EventBatch`` in the published layout."""
    return msgspec.msgpack.encode(ARRAY.batch(time.time() if ts is None else ts, events, rank))
