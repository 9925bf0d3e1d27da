"""Statistics of the economy experiments (paper 003, supplementary S6-A), with scipy.stats.

* Confidence intervals: BCa bootstrap (``scipy.stats.bootstrap``, 2,000 resamples) of the mean
  over seeds; where BCa is undefined (a constant metric, e.g. zero volatility) the percentile
  interval is used, and a constant sample gets the degenerate interval [x, x].
* Multi-group tests: Kruskal-Wallis H; NaN when every value is identical (no test applicable).
* Pairwise tests: two-sided **Wilcoxon rank-sum (Mann-Whitney U)**, the independent-samples
  test the paper names, Holm-corrected within each family of comparisons, with Cliff's delta and
  the Romano et al. magnitude labels (|d| < 0.147 negligible, < 0.33 small, < 0.474 medium, else
  large). Runs of different conditions share seeds (common random numbers), so the rank-sum test
  is conservative here; it is kept for comparability with the paper.
* Synergy (Eq. S1): ``(W_hs - W_nn) - (W_hn - W_nn) - (W_ns - W_nn)`` for architecture
  (naive / hybrid) x governance (none / strict), with a BCa interval from resampling the four
  groups independently; an interval that contains 0 means additive composition.
* Trends: Spearman rank correlation (Experiment 2's scaling with N).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean with its confidence interval."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """One pairwise rank-sum test within a Holm family."""

    a: str
    b: str
    u: float
    p: float
    p_holm: float
    delta: float
    magnitude: str


def _clean(x: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def bca_interval(x: ArrayLike, seed: int = 0, resamples: int = RESAMPLES) -> Estimate:
    """Mean and BCa 95% interval (percentile fallback, degenerate for constant samples)."""
    data = _clean(x)
    if data.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    mean = float(data.mean())
    if data.size < 2 or np.ptp(data) == 0:
        return Estimate(mean, mean, mean)
    return Estimate(mean, *_bootstrap((data,), _mean_statistic, seed, resamples))


def _mean_statistic(x: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    return x.mean(axis=axis)


def _bootstrap(samples: tuple[NDArray[np.float64], ...], statistic: object, seed: int,
               resamples: int) -> tuple[float, float]:
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(samples, statistic, n_resamples=resamples, method=method,
                                  confidence_level=CONFIDENCE, vectorized=True, rng=seed)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            return low, high
    return float("nan"), float("nan")


def kruskal(groups: Sequence[ArrayLike]) -> tuple[float, float]:
    """Kruskal-Wallis (H, p); NaNs when fewer than two groups have data or all values tie."""
    data = [g for g in (_clean(x) for x in groups) if g.size]
    if len(data) < 2 or np.ptp(np.concatenate(data)) == 0:
        return float("nan"), float("nan")
    res = stats.kruskal(*data)
    return float(res.statistic), float(res.pvalue)


def cliffs_delta(x: ArrayLike, y: ArrayLike) -> float:
    """P(X > Y) - P(X < Y) over all pairs: a rank effect size in [-1, 1]."""
    a, b = _clean(x), _clean(y)
    if a.size == 0 or b.size == 0:
        return float("nan")
    diff = np.sign(a[:, None] - b[None, :])
    return float(diff.mean())


def magnitude(delta: float) -> str:
    """Romano et al.'s label for |Cliff's delta|."""
    if not np.isfinite(delta):
        return "n/a"
    d = abs(delta)
    return "negligible" if d < 0.147 else "small" if d < 0.33 else "medium" if d < 0.474 else "large"


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (NaNs are left out of the family and kept as NaN)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.size, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = order.size
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def pairwise(groups: Mapping[str, ArrayLike],
             pairs: Sequence[tuple[str, str]] | None = None) -> list[Comparison]:
    """Rank-sum tests for ``pairs`` (default: all pairs) as one Holm family."""
    chosen = list(pairs) if pairs is not None else list(combinations(groups, 2))
    for a, b in chosen:
        if a not in groups or b not in groups:
            raise ValueError(f"pair ({a}, {b}) names a group not in {sorted(groups)}")
    raw = []
    for a, b in chosen:
        x, y = _clean(groups[a]), _clean(groups[b])
        if x.size == 0 or y.size == 0 or np.ptp(np.concatenate([x, y])) == 0:
            raw.append((float("nan"), float("nan")))
            continue
        res = stats.mannwhitneyu(x, y, alternative="two-sided")
        raw.append((float(res.statistic), float(res.pvalue)))
    adjusted = holm([p for _, p in raw])
    out = []
    for (a, b), (u, p), padj in zip(chosen, raw, adjusted, strict=True):
        delta = cliffs_delta(groups[a], groups[b])
        out.append(Comparison(a, b, u, p, padj, delta, magnitude(delta)))
    return out


def synergy(naive_none: ArrayLike, hybrid_none: ArrayLike, naive_strict: ArrayLike,
            hybrid_strict: ArrayLike, seed: int = 0, resamples: int = RESAMPLES) -> Estimate:
    """Eq. S1 interaction of architecture and governance on a metric, with a BCa interval."""
    groups = tuple(_clean(g) for g in (naive_none, hybrid_none, naive_strict, hybrid_strict))
    if any(g.size == 0 for g in groups):
        return Estimate(float("nan"), float("nan"), float("nan"))
    point = float(_interaction(*groups))
    if all(g.size < 2 or np.ptp(g) == 0 for g in groups):
        return Estimate(point, point, point)
    return Estimate(point, *_bootstrap(groups, _interaction, seed, resamples))


def synergy_kind(low: float, high: float) -> str:
    """Regime of a synergy interval: additive when it contains 0, else super- or sub-additive."""
    if low <= 0 <= high:
        return "additive"
    return "super-additive" if low > 0 else "sub-additive"


def _interaction(nn: NDArray[np.float64], hn: NDArray[np.float64], ns: NDArray[np.float64],
                 hs: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    return (hs.mean(axis=axis) - hn.mean(axis=axis) - ns.mean(axis=axis) + nn.mean(axis=axis))


def spearman(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Spearman (rho, p); NaNs when either side is constant."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return float("nan"), float("nan")
    res = stats.spearmanr(a[keep], b[keep])
    return float(res.statistic), float(res.pvalue)
