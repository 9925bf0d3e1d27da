"""Walrasian tâtonnement: prices move with normalised excess demand, clipped to a floor and a cap.

One iteration is ``p <- clip(p + eta * (D(p) - S) / S, floor, cap)`` for every good at once: a
good in excess demand gets dearer, one in excess supply cheaper, in proportion to the excess
relative to its supply, so one step size serves goods of very different capacities (paper 003,
Table S3: 15 iterations, eta = 0.25, floor 0, cap 1000). The demand side is any function of the
price vector; two common ones are provided:

* :func:`bundle_demand`: single-minded buyers, each wanting one fixed bundle for a reported
  value, demand their bundle while the value exceeds its price (the service economy's tasks);
* :func:`unit_demand`: unit-demand buyers with a value per good, each demanding the one good of
  largest positive surplus (gross substitutes: used by the tests as a market where tâtonnement
  is known to converge).

Pure numpy; no state between calls, so a caller that keeps prices across rounds passes them in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Demand = Callable[[NDArray[np.float64]], NDArray[np.float64]]


@dataclass(frozen=True)
class TatonnementResult:
    """Final prices, the last iteration's excess demand ``D(p) - S`` and the iterations run.

    The run stops early at a fixed point (prices that an iteration leaves unchanged, e.g. every
    price at the floor with excess supply), since the remaining iterations would repeat it.
    """

    prices: NDArray[np.float64]
    excess: NDArray[np.float64]
    iterations: int


def tatonnement(demand: Demand, supply: ArrayLike, prices: ArrayLike, *, iterations: int,
                step: float, floor: float = 0.0, cap: float = np.inf) -> TatonnementResult:
    """Run ``iterations`` price updates from ``prices`` and return where they ended."""
    s = np.asarray(supply, dtype=np.float64)
    p = np.asarray(prices, dtype=np.float64).copy()
    if s.ndim != 1 or p.shape != s.shape:
        raise ValueError(f"supply and prices must be 1-D of equal length, got {s.shape} and {p.shape}")
    if (s <= 0).any() or not np.isfinite(s).all():
        raise ValueError(f"supply must be positive and finite, got {s}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    if not floor < cap:
        raise ValueError(f"floor {floor} must be below cap {cap}")
    p = np.clip(p, floor, cap)
    excess = np.zeros_like(s)
    done = 0
    for _ in range(iterations):
        done += 1
        excess = demand(p) - s
        moved = np.minimum(np.maximum(p + step * excess / s, floor), cap)
        if np.array_equal(moved, p):
            break  # a fixed point: every further iteration would repeat this one
        p = moved
    return TatonnementResult(prices=p, excess=excess, iterations=done)


def bundle_demand(values: ArrayLike, bundles: ArrayLike) -> Demand:
    """Aggregate demand of buyers who each take ``bundles[k]`` iff ``values[k]`` beats its price."""
    v = np.asarray(values, dtype=np.float64)
    b = np.asarray(bundles, dtype=np.float64)
    if b.ndim != 2 or v.shape != (b.shape[0],):
        raise ValueError(f"need values (n,) and bundles (n, goods), got {v.shape} and {b.shape}")

    def demand(prices: NDArray[np.float64]) -> NDArray[np.float64]:
        return (v > b @ prices).astype(np.float64) @ b

    return demand


def unit_demand(values: ArrayLike) -> Demand:
    """Aggregate demand of unit-demand buyers; ``values[i, j]`` is buyer i's value for good j."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"values must be (buyers, goods), got shape {v.shape}")

    def demand(prices: NDArray[np.float64]) -> NDArray[np.float64]:
        surplus = v - prices
        best = surplus.argmax(axis=1)
        wants = surplus[np.arange(v.shape[0]), best] > 0
        return np.bincount(best[wants], minlength=v.shape[1]).astype(np.float64)

    return demand
