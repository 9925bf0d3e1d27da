"""SGLang router's cache-aware rule.

Route to the backend with the longest prefix match when it covers more than ``cache_threshold``
of the prompt, else to the least loaded; but when the load imbalance passes both thresholds
(absolute and relative), to the least loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mercato.gateway.core.market import BatchContext
from mercato.gateway.core.policies.base import Allocation, Stateless, assign_sequentially


@dataclass
class CacheAwarePolicy(Stateless):
    """SGLang router's cache-aware rule (defaults are its published defaults)."""

    cache_threshold: float = 0.5
    balance_abs_threshold: float = 32.0
    balance_rel_threshold: float = 1.0001
    name: str = "cache_aware"

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Prefix match unless the load is imbalanced; otherwise the shortest queue."""

        def pick(i: int, ok: NDArray[np.bool_], load: NDArray[np.float64], _left: NDArray[np.int64]) -> int:
            loads = load[ok]
            least = int(np.argmin(np.where(ok, load, np.inf)))
            if (loads.max() - loads.min() > self.balance_abs_threshold
                    and loads.max() > self.balance_rel_threshold * loads.min()):
                return least
            best = int(np.argmax(np.where(ok, ctx.affinity[i], -np.inf)))
            return best if ctx.affinity[i, best] > self.cache_threshold else least

        return Allocation.unpriced(assign_sequentially(ctx, pick))
