"""Prefix ledger: which prompt text each backend last saw for each session (IEMAS Eq. 4).

The affinity of request j to backend i is ``lcp(prompt_j, last_i(session_j)) / len(prompt_j)``,
a proxy for how much of the prompt the backend still holds in its KV cache. The ledger is
bounded (LRU per backend) and resyncs itself: when a backend reports far fewer cached tokens
than the ledger promised, that backend evicted the entry, and since engines evict least
recently used blocks first, every entry of that backend older than it is dropped too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


def common_prefix_length(a: str, b: str) -> int:
    """Length of the longest common prefix, by binary search over C-level slice compares."""
    hi = min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class ResyncRule:
    """When an observation proves the ledger wrong (IEMAS reference thresholds)."""

    min_prompt_tokens: int = 64
    min_affinity: float = 0.8
    max_observed_ratio: float = 0.10


class PrefixLedger:
    """Per (backend, session) the last text the backend processed, LRU-bounded per backend."""

    def __init__(self, backends: list[str], max_sessions_per_backend: int = 50_000,
                 rule: ResyncRule | None = None) -> None:
        if max_sessions_per_backend < 1:
            raise ValueError("max_sessions_per_backend must be >= 1")
        self._entries: dict[str, OrderedDict[str, str]] = {b: OrderedDict() for b in backends}
        self._position = {b: i for i, b in enumerate(backends)}
        self._holders: dict[str, set[str]] = {}  # session -> backends holding an entry for it
        self._limit = max_sessions_per_backend
        self.rule = rule or ResyncRule()
        self.resyncs = 0
        self.dropped = 0
        self._listeners: list[Callable[[str, str, str], None]] = []

    def affinity(self, backend: str, session: str, prompt: str) -> float:
        """Fraction of ``prompt`` (in characters) that ``backend`` last saw for ``session``."""
        last = self._entries[backend].get(session)
        if not last or not prompt:
            return 0.0
        return common_prefix_length(prompt, last) / max(1, len(prompt))

    def affinity_row(self, session: str, prompt: str, out: NDArray[np.float64]) -> None:
        """Write the prompt's affinity to every backend into ``out`` (zeros where unknown).

        Only backends that hold the session are visited, so a batch costs O(N x holders), not
        O(N x M) string comparisons.
        """
        for backend in self._holders.get(session, ()):
            out[self._position[backend]] = self.affinity(backend, session, prompt)

    def observe(self, backend: str, session: str, text: str, *, affinity: float,
                prompt_tokens: int, cached_tokens: int) -> bool:
        """Record what ``backend`` now holds for ``session``; returns True when it forced a resync."""
        entries = self._entries[backend]
        rule = self.rule
        resync = (prompt_tokens >= rule.min_prompt_tokens and affinity >= rule.min_affinity
                  and cached_tokens <= rule.max_observed_ratio * prompt_tokens)
        if resync and session in entries:
            # LRU eviction at the engine: everything older than this entry is gone as well.
            for key in list(entries):
                self._drop(backend, key)
                if key == session:
                    break
            self.resyncs += 1
        self.remember(backend, session, text)
        for listener in self._listeners:
            listener(backend, session, text)
        return resync

    def remember(self, backend: str, session: str, text: str) -> None:
        """``backend`` now holds ``text`` for ``session``, as another replica saw it (listeners are
        not told: the entry came from them)."""
        entries = self._entries[backend]
        entries[session] = text
        entries.move_to_end(session)
        self._holders.setdefault(session, set()).add(backend)
        while len(entries) > self._limit:
            self._drop(backend, next(iter(entries)))

    def listen(self, listener: Callable[[str, str, str], None]) -> None:
        """Call ``listener(backend, session, text)`` for every entry this replica observes itself."""
        self._listeners.append(listener)

    def _drop(self, backend: str, session: str) -> None:
        del self._entries[backend][session]
        holders = self._holders[session]
        holders.discard(backend)
        if not holders:
            del self._holders[session]
        self.dropped += 1

    def __len__(self) -> int:
        return sum(len(e) for e in self._entries.values())
