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

from mercato.gateway.core.kv_index import KVIndex
from mercato.gateway.core.prefix import PrefixLedger
from mercato.gateway.core.prompt_blocks import PromptBlocks
from mercato.gateway.core.types import RouteRequest


class AffinitySource(Protocol):
    """What the market builder needs: a prompt's affinity to every backend."""

    def affinity_row(self, request: RouteRequest, out: NDArray[np.float64]) -> None:
        """Write the request's affinity to each backend into ``out`` (M,), which starts at zeros."""
        ...


class CacheAffinity:
    """The ledger's affinity, overwritten for every backend whose KV index is exact."""

    def __init__(self, backends: list[str], ledger: PrefixLedger, index: KVIndex | None = None) -> None:
        self.ledger = ledger
        self.index = index
        followed = set(index.backends) if index is not None else set()
        self._indexed = [(j, name) for j, name in enumerate(backends) if name in followed]

    def affinity_row(self, request: RouteRequest, out: NDArray[np.float64]) -> None:
        """Ledger affinity for every backend, then exact affinity where the index is in sync."""
        self.ledger.affinity_row(request.session_id, request.prompt, out)
        index = self.index
        if index is None or not request.prompt:
            return
        # one chain per engine tokenizer and block size, computed once per request
        chains: dict[tuple[PromptBlocks, int], tuple[list[int], float]] = {}
        for j, name in self._indexed:
            if not index.exact(name):
                continue
            block_size = index.block_size(name)
            if block_size is None:  # in sync and nothing stored yet: nothing cached
                out[j] = 0.0
                continue
            how = index.prompt_blocks(name)
            found = chains.get((how, block_size))
            if found is None:
                found = chains[how, block_size] = how.blocks(request, block_size)
            keys, length = found
            out[j] = min(1.0, index.cached_blocks(name, keys) * block_size / length) if length else 0.0

    def exact(self) -> list[str]:
        """Backends whose affinity comes from the KV index right now."""
        index = self.index
        return [name for _, name in self._indexed if index is not None and index.exact(name)]
