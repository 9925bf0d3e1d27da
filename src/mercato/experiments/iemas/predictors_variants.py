"""The predictor variants the Fig. 3 ablation compares, and the tree bank that stands in for the Router's.

The variants (:data:`VARIANTS`) are the IEMAS reference's predictors as run (per backend, river
Hoeffding trees with library defaults on raw targets, one-hot features, warmed up with TTFT labels
of 250 ms), and plain trees that split as fast as mercato's with numeric or one-hot features, so
that the encoding alone is compared. One-hot makes each distinct prompt length, load or rate its
own indicator feature, so no split can express "more tokens, more time". The variants replace the
Router's :class:`~mercato.gateway.core.predictors.PredictorBank` through a subclass; the core is
unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from river import tree

from mercato.gateway.core.features import NAMES, TREE_FEATURES
from mercato.gateway.core.predictors import Predictions, PredictorBank, baseline_cost
from mercato.gateway.core.types import BackendSpec

VARIANTS: dict[str, str] = {
    "mercato": "mercato's predictors: numeric features; log-TTFT recursive least squares plus a residual "
    "tree; Eq. 6 baseline plus a residual tree; classification tree",
    "reference_onehot": "the IEMAS reference as run: river trees with library defaults (grace period 200, "
    "adaptive leaves) on raw targets, one-hot numeric features",
    "trees_numeric": "plain river trees on raw targets, mercato's split settings (grace period 20, "
    "confidence 1e-3, mean leaves), numeric features",
    "trees_onehot": "the same plain trees, one-hot numeric features",
}
WARMUP_TTFT_S = 0.25  # the reference's fixed warm-up latency label
WARMUP_OUTPUT_TOKENS = 32.0


class ReferenceTreeBank(PredictorBank):
    """Plain river trees per backend on raw targets, as the IEMAS reference predicted.

    ``onehot`` turns each numeric feature value into its own indicator (``name=value`` with three
    significant digits), the reference's encoding; otherwise the Router's numeric features are
    used as they are. ``defaults`` keeps river's defaults (the reference); otherwise the trees
    split as fast as mercato's (grace period 20, confidence 1e-3) and predict leaf means, so that
    the encoding is the only difference from ``trees_numeric``. Before a backend's first
    prediction its trees learn two warm-up rows of that batch (TTFT 250 ms, the Eq. 6 list-price
    cost, one correct and one wrong answer), as the reference's start-up warm-up did, so that
    predictions are not all zero.
    """

    def __init__(self, specs: list[BackendSpec], onehot: bool, defaults: bool) -> None:
        super().__init__(specs)
        self.onehot = onehot
        fast: dict[str, Any] = {} if defaults else {"grace_period": 20, "delta": 1e-3}
        regressor: dict[str, Any] = {} if defaults else {**fast, "leaf_prediction": "mean"}
        classifier: dict[str, Any] = {} if defaults else {**fast, "leaf_prediction": "mc"}
        self.latency_trees = [tree.HoeffdingTreeRegressor(**regressor) for _ in specs]
        self.cost_trees = [tree.HoeffdingTreeRegressor(**regressor) for _ in specs]
        self.quality_trees = [tree.HoeffdingTreeClassifier(**classifier) for _ in specs]
        self._warm = np.zeros(len(specs), dtype=bool)

    def encode(self, row: NDArray[np.float64]) -> dict[str, float]:
        """One feature row as river's dict (the trees' columns): numeric, or one indicator per value."""
        names, values = NAMES[:TREE_FEATURES], row[:TREE_FEATURES]
        if self.onehot:
            return {f"{name}={value:.3g}": 1.0 for name, value in zip(names, values, strict=True)}
        return {name: float(value) for name, value in zip(names, values, strict=True)}

    def learn(
        self,
        backend: int,
        x: NDArray[np.float64],
        domain_index: int,
        latency_s: float | None,
        cost: float,
        completion_tokens: int,
        correct: bool | None,
        met_load: tuple[float, float] | None = None,
    ) -> None:
        """Raw targets, as the reference learned them (it knew nothing of the load a request met)."""
        sample = self.encode(x)
        if latency_s is not None:
            self.latency_trees[backend].learn_one(sample, float(latency_s))
        self.cost_trees[backend].learn_one(sample, float(cost))
        if correct is not None:
            self.quality_trees[backend].learn_one(sample, bool(correct))

    def _warm_up(self, x: NDArray[np.float64]) -> None:
        out = np.full((1, 1), WARMUP_OUTPUT_TOKENS)
        for j in np.flatnonzero(~self._warm):
            for i, correct in ((0, True), (min(1, x.shape[0] - 1), False)):
                row = x[i, j]
                cost = float(baseline_cost(self.prices[j : j + 1], row[None, None], out)[0, 0])
                self.learn(int(j), row, 0, WARMUP_TTFT_S, cost, int(WARMUP_OUTPUT_TOKENS), correct)
            self._warm[j] = True

    def predict(self, x: NDArray[np.float64], domain_index: NDArray[np.int64]) -> Predictions:
        """Every pair scored one at a time with river (slow, but these runs are small)."""
        n, m, _ = x.shape
        if n and not self._warm.all():
            self._warm_up(x)
        latency, cost, quality = np.empty((n, m)), np.empty((n, m)), np.empty((n, m))
        for i in range(n):
            for j in range(m):
                sample = self.encode(x[i, j])
                latency[i, j] = max(float(self.latency_trees[j].predict_one(sample)), 1e-3)
                cost[i, j] = max(float(self.cost_trees[j].predict_one(sample)), 0.0)
                proba = self.quality_trees[j].predict_proba_one(sample)
                quality[i, j] = float(proba.get(True, 0.0)) if proba else 0.5
        return Predictions(latency, cost, quality)
