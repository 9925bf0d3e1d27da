"""Where each backend's affinity comes from: its exact KV index when in sync, else the prefix ledger.

Affinity (IEMAS Eq. 4) is the fraction of a prompt the backend still holds in its KV cache. The
prefix ledger guesses it from what the gateway sent; a backend whose KV events the gateway follows
(:mod:`mercato.gateway.core.kv_index`) has it exactly, as cached full blocks over the prompt's
length, while its event stream is in sync. Every policy reads the same matrix, so the choice of
source is invisible to them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from mercato.engine.tokenizer import CHARS_PER_TOKEN
from mercato.gateway.core.kv_index import KVIndex, prompt_chain
from mercato.gateway.core.prefix import PrefixLedger


class AffinitySource(Protocol):
    """What the market builder needs: a prompt's affinity to every backend."""

    def affinity_row(self, session: str, prompt: str, out: NDArray[np.float64]) -> None:
        """Write the prompt's affinity to each backend into ``out`` (M,), which starts at zeros."""
        ...


class CacheAffinity:
    """The ledger's affinity, overwritten for every backend whose KV index is exact."""

    def __init__(self, backends: list[str], ledger: PrefixLedger, index: KVIndex | None = None) -> None:
        self.ledger = ledger
        self.index = index
        followed = set(index.backends) if index is not None else set()
        self._indexed = [(j, name) for j, name in enumerate(backends) if name in followed]

    def affinity_row(self, session: str, prompt: str, out: NDArray[np.float64]) -> None:
        """Ledger affinity for every backend, then exact affinity where the index is in sync."""
        self.ledger.affinity_row(session, prompt, out)
        index = self.index
        if index is None or not prompt:
            return
        chains: dict[int, list[int]] = {}  # one chain per block size, computed once per prompt
        for j, name in self._indexed:
            if not index.exact(name):
                continue
            block_size = index.block_size(name)
            if block_size is None:  # in sync and nothing stored yet: nothing cached
                out[j] = 0.0
                continue
            keys = chains.get(block_size)
            if keys is None:
                keys = chains[block_size] = prompt_chain(prompt, block_size)
            cached = index.cached_blocks(name, keys) * block_size * CHARS_PER_TOKEN
            out[j] = min(1.0, cached / len(prompt))

    def exact(self) -> list[str]:
        """Backends whose affinity comes from the KV index right now."""
        index = self.index
        return [name for _, name in self._indexed if index is not None and index.exact(name)]
