"""Reading vLLM's KV event batches leniently: any layout vLLM has used, and a bad event costs only itself.

A batch is decoded in one typed pass (array or map layout, told apart by its first msgpack byte).
When that fails, the batch is taken apart and each event converted on its own, so one malformed
event, or one of a type this gateway does not know (a later vLLM's), is counted and skipped while
the rest still apply. A message that is not a batch at all is one malformed message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from mercato.engine.kv_events import ARRAY, MAP

KNOWN_EVENTS = frozenset({"BlockStored", "BlockRemoved", "AllBlocksCleared"})
_TYPED = {False: msgspec.msgpack.Decoder(ARRAY.batch), True: msgspec.msgpack.Decoder(MAP.batch)}
_RAW = msgspec.msgpack.Decoder()
_MAP_MARKERS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}  # fixmap, map 16, map 32


@dataclass
class Decoded:
    """The events of one message that could be read, and how many could not."""

    events: list[Any] = field(default_factory=list)
    malformed: int = 0
    unknown: int = 0


def decode_batch(payload: bytes) -> Decoded:
    """The events of one ``EventBatch`` payload, in order."""
    is_map = bool(payload) and payload[0] in _MAP_MARKERS
    try:
        return Decoded(_TYPED[is_map].decode(payload).events)
    except msgspec.DecodeError:  # ValidationError included: one bad event spoils the typed pass
        pass
    try:
        raw = _RAW.decode(payload)
    except msgspec.DecodeError:
        return Decoded(malformed=1)
    items = raw.get("events") if isinstance(raw, dict) else (
        raw[1] if isinstance(raw, list) and len(raw) > 1 else None)
    if not isinstance(items, list):
        return Decoded(malformed=1)
    out = Decoded()
    for item in items:
        schema = MAP if isinstance(item, dict) else ARRAY
        try:
            out.events.append(msgspec.convert(item, schema.event))
        except msgspec.ValidationError:
            tag = item.get("type") if isinstance(item, dict) else (
                item[0] if isinstance(item, list) and item else None)
            if isinstance(tag, str) and tag not in KNOWN_EVENTS:
                out.unknown += 1
            else:
                out.malformed += 1
    return out
