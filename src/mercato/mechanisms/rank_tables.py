"""Rank tables: a set function stored as one value per subset, indexed by bitmask (bit i = element i).

Plain numpy, shared by the polymatroid check of a service DAG
(:func:`~mercato.mechanisms.polymatroid.check_polymatroid`) and by the clinching auction, which
both need the polymatroid axioms tested and supersets scanned on all ``2^n`` subsets at once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
from numpy.typing import NDArray

# Rank values are capacities (O(1)-O(1e3)); differences below this are float noise from the LP.
RANK_TOLERANCE = 1e-9


@dataclass(frozen=True)
class RankViolation:
    """A failed polymatroid axiom: ``f(base + added) ... `` falls short by ``gap``."""

    axiom: Literal["normalised", "monotone", "submodular"]
    base: frozenset[int]
    added: tuple[int, ...]
    gap: float

    def describe(self, names: tuple[Hashable, ...] | None = None) -> str:
        """Human-readable statement of the failed inequality, with element ``names`` if given."""
        def name(i: int) -> str:
            return repr(names[i]) if names is not None else str(i)

        base = "{" + ", ".join(sorted(name(i) for i in self.base)) + "}"
        if self.axiom == "normalised":
            return f"f({{}}) = {self.gap:g}, not 0"
        if self.axiom == "monotone":
            return f"f(S + {name(self.added[0])}) < f(S) by {self.gap:g} for S = {base}"
        i, j = (name(a) for a in self.added)
        return (f"f(S + {i}) + f(S + {j}) < f(S + {i} + {j}) + f(S) by {self.gap:g} "
                f"for S = {base}")


def rank_table(rank: Callable[[frozenset[int]], float], size: int) -> NDArray[np.float64]:
    """Evaluate a set function on every subset of ``range(size)``; ValueError on bad values."""
    if size < 0:
        raise ValueError(f"the ground set size must be non-negative, got {size}")
    table = np.empty(1 << size)
    for mask in range(1 << size):
        value = rank(frozenset(i for i in range(size) if mask >> i & 1))
        try:
            table[mask] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"rank must return a number, got {value!r}") from None
    if not np.isfinite(table).all():
        mask = int(np.argmax(~np.isfinite(table)))
        raise ValueError(f"rank is not finite on subset {_members(mask)}")
    return table


def rank_violation(table: NDArray[np.float64], tol: float = RANK_TOLERANCE) -> RankViolation | None:
    """First polymatroid axiom (normalised, monotone, submodular) that ``table`` breaks, or None."""
    size = _table_size(table)
    if abs(table[0]) > tol:
        return RankViolation("normalised", frozenset(), (), float(table[0]))
    masks = np.arange(table.size)
    for i in range(size):
        base = masks[(masks >> i & 1) == 0]
        drop = table[base] - table[base | 1 << i]
        if (drop > tol).any():
            k = int(np.argmax(drop))
            return RankViolation("monotone", _members(int(base[k])), (i,), float(drop[k]))
    for i, j in combinations(range(size), 2):
        base = masks[((masks >> i & 1) == 0) & ((masks >> j & 1) == 0)]
        gap = table[base | 1 << i | 1 << j] + table[base] - table[base | 1 << i] - table[base | 1 << j]
        if (gap > tol).any():
            k = int(np.argmax(gap))
            return RankViolation("submodular", _members(int(base[k])), (i, j), float(gap[k]))
    return None


def subset_sums(weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """``w(S)`` for every subset S of the elements, in bitmask order."""
    masks = np.arange(1 << weights.size)
    bits = (masks[:, None] >> np.arange(weights.size)) & 1
    return bits @ weights.astype(np.float64)


def superset_min(table: NDArray[np.float64]) -> NDArray[np.float64]:
    """``min over T containing S of table[T]`` for every S (one pass per element)."""
    out = table.copy()
    masks = np.arange(out.size)
    for i in range(_table_size(out)):
        base = masks[(masks >> i & 1) == 0]
        out[base] = np.minimum(out[base], out[base | 1 << i])
    return out


def _table_size(table: NDArray[np.float64]) -> int:
    size = int(table.size).bit_length() - 1
    if table.ndim != 1 or table.size != 1 << size:
        raise ValueError(f"a rank table needs 2^k entries in one dimension, got shape {table.shape}")
    return size


def _members(mask: int) -> frozenset[int]:
    return frozenset(i for i in range(mask.bit_length()) if mask >> i & 1)
