"""Prediction quality of the router's QoS predictors: NMAE on each run's held-out tail.

Every prediction is made before its observation is learned (prequential), so the errors of
the last ``tail`` share of requests measure generalisation after the warm-up, the way IEMAS
reports them: NMAE = sum |predicted - observed| / sum |observed|.
"""

from __future__ import annotations

import numpy as np


class QualityTracker:
    """Pairs of (predicted, observed) latency, cost and correctness, in finishing order."""

    def __init__(self) -> None:
        self.latency: list[tuple[float, float]] = []
        self.cost: list[tuple[float, float]] = []
        self.quality: list[tuple[float, float]] = []

    def add(self, latency_pred: float, latency_obs: float | None, cost_pred: float, cost_obs: float,
            quality_pred: float, correct: bool | None) -> None:
        """Record one finished request's predictions and outcomes."""
        if latency_obs is not None:
            self.latency.append((float(latency_pred), float(latency_obs)))
        self.cost.append((float(cost_pred), float(cost_obs)))
        if correct is not None:
            self.quality.append((float(quality_pred), float(correct)))

    def nmae(self, tail: float = 0.2) -> dict[str, float]:
        """NMAE of each target over the last ``tail`` share of its pairs (NaN if none)."""
        return {"latency": _nmae(self.latency, tail), "cost": _nmae(self.cost, tail),
                "quality": _nmae(self.quality, tail)}


def _nmae(pairs: list[tuple[float, float]], tail: float) -> float:
    if not pairs:
        return float("nan")
    start = int(len(pairs) * (1.0 - tail)) if len(pairs) >= 5 else 0
    arr = np.asarray(pairs[start:])
    denom = float(np.abs(arr[:, 1]).sum())
    return float(np.abs(arr[:, 0] - arr[:, 1]).sum() / denom) if denom > 0 else float("nan")
