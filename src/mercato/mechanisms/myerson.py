"""Myerson virtual costs for procurement: what honesty costs the buyer, per unit of work.

A seller whose private cost c is drawn from F is, to a buyer running a truthful reverse auction,
as expensive as ``phi(c) = c + F(c)/f(c)``: the cost itself plus the information rent the buyer
must leave it so that lying does not pay. Minimising total virtual cost therefore minimises the
expected payment (Myerson 1981), provided phi is non-decreasing. When it is not (multi-modal
priors, e.g. a bid history with two clusters), ironing replaces phi by the slope of the convex
hull of ``H(q) = q * F^-1(q)`` in quantile space, which is non-decreasing and keeps the
allocation monotone, hence truthful.

Bids below the prior's support get ``phi(b) = b`` (no rent: F = 0 there); bids above the
agent's *reserve* (by default the top of the support) are refused, ``phi = +inf``, because no
truthful seller has such a cost.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

FloatArray = NDArray[np.float64]

# Quantile-grid resolution of ironing: irregular priors get phi piecewise-linear on this grid.
IRONING_GRID = 4097
# Quantile treated as the top of an unbounded support when no reserve is given.
UNBOUNDED_TOP_QUANTILE = 0.999


class Prior(ABC):
    """Distribution of a seller's private cost per unit of work (non-negative)."""

    @property
    @abstractmethod
    def support(self) -> tuple[float, float]:
        """Lowest and highest possible cost; the top may be ``inf``."""

    @abstractmethod
    def cdf(self, x: FloatArray) -> FloatArray:
        """F(x)."""

    @abstractmethod
    def pdf(self, x: FloatArray) -> FloatArray:
        """f(x)."""

    @abstractmethod
    def ppf(self, q: FloatArray) -> FloatArray:
        """F^-1(q), the cost at quantile q."""


def _positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def _non_negative(name: str, value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


@dataclass(frozen=True)
class UniformPrior(Prior):
    """Cost uniform on [low, high]: ``phi(b) = 2b - low``, regular, no ironing."""

    low: float
    high: float

    def __post_init__(self) -> None:
        _non_negative("uniform prior low", self.low)
        _non_negative("uniform prior high", self.high)
        if self.high <= self.low:
            raise ValueError(f"uniform prior needs low < high, got low={self.low}, high={self.high}")

    @property
    def support(self) -> tuple[float, float]:
        return (self.low, self.high)

    def cdf(self, x: FloatArray) -> FloatArray:
        return np.clip((np.asarray(x, dtype=np.float64) - self.low) / (self.high - self.low), 0.0, 1.0)

    def pdf(self, x: FloatArray) -> FloatArray:
        x = np.asarray(x, dtype=np.float64)
        inside = (x >= self.low) & (x <= self.high)
        return np.where(inside, 1.0 / (self.high - self.low), 0.0)

    def ppf(self, q: FloatArray) -> FloatArray:
        return self.low + np.asarray(q, dtype=np.float64) * (self.high - self.low)


class _ScipyPrior(Prior):
    """A prior backed by a frozen scipy.stats distribution."""

    @property
    @abstractmethod
    def _dist(self) -> stats.rv_continuous:
        """The scipy distribution."""

    def cdf(self, x: FloatArray) -> FloatArray:
        return np.asarray(self._dist.cdf(x), dtype=np.float64)

    def pdf(self, x: FloatArray) -> FloatArray:
        return np.asarray(self._dist.pdf(x), dtype=np.float64)

    def ppf(self, q: FloatArray) -> FloatArray:
        return np.asarray(self._dist.ppf(q), dtype=np.float64)


@dataclass(frozen=True)
class TruncatedNormalPrior(_ScipyPrior):
    """Normal(mean, std) cut to [low, high]; log-concave, so phi is already monotone."""

    mean: float
    std: float
    low: float
    high: float

    def __post_init__(self) -> None:
        _positive("truncated normal std", self.std)
        _non_negative("truncated normal low", self.low)
        if not (math.isfinite(self.mean) and self.high > self.low and math.isfinite(self.high)):
            raise ValueError(f"truncated normal needs a finite mean and low < high < inf, got "
                             f"mean={self.mean}, low={self.low}, high={self.high}")

    @property
    def _dist(self) -> stats.rv_continuous:
        a, b = (self.low - self.mean) / self.std, (self.high - self.mean) / self.std
        return stats.truncnorm(a, b, loc=self.mean, scale=self.std)

    @property
    def support(self) -> tuple[float, float]:
        return (self.low, self.high)


@dataclass(frozen=True)
class LogNormalPrior(_ScipyPrior):
    """Cost log-normal with the given median and log-scale sigma; support (0, inf)."""

    median: float
    sigma: float

    def __post_init__(self) -> None:
        _positive("log-normal median", self.median)
        _positive("log-normal sigma", self.sigma)

    @property
    def _dist(self) -> stats.rv_continuous:
        return stats.lognorm(s=self.sigma, scale=self.median)

    @property
    def support(self) -> tuple[float, float]:
        return (0.0, math.inf)


class EmpiricalPrior(Prior):
    """A smoothed bid history: Gaussian kernel density over past costs, cut at 0.

    A raw empirical CDF has no density, so phi would not exist; the kernel (Silverman's
    bandwidth unless given) makes F differentiable. Histories with clusters give irregular
    priors, which :class:`VirtualCost` irons.
    """

    def __init__(self, samples: Sequence[float] | ArrayLike, bandwidth: float | None = None) -> None:
        data = np.asarray(samples, dtype=np.float64).ravel()
        if data.size < 2:
            raise ValueError(f"empirical prior needs at least 2 samples, got {data.size}")
        if not np.isfinite(data).all() or (data < 0).any():
            raise ValueError("empirical prior samples must be finite numbers >= 0")
        if bandwidth is None:
            spread = float(np.std(data, ddof=1))
            bandwidth = 1.06 * (spread if spread > 0 else max(float(data.mean()), 1.0) * 0.1) \
                * data.size ** -0.2
        self.samples = data
        self.bandwidth = _positive("empirical prior bandwidth", float(bandwidth))
        self._mass_below_zero = float(stats.norm.cdf(-data / self.bandwidth).mean())
        top = float(data.max() + 6.0 * self.bandwidth)
        self._grid = np.linspace(0.0, top, 2049)
        self._grid_cdf = self.cdf(self._grid)

    @property
    def support(self) -> tuple[float, float]:
        return (0.0, float(self._grid[-1]))

    def _z(self, x: FloatArray) -> FloatArray:
        return (np.asarray(x, dtype=np.float64)[..., None] - self.samples) / self.bandwidth

    def cdf(self, x: FloatArray) -> FloatArray:
        raw = stats.norm.cdf(self._z(x)).mean(axis=-1)
        return np.clip((raw - self._mass_below_zero) / (1.0 - self._mass_below_zero), 0.0, 1.0)

    def pdf(self, x: FloatArray) -> FloatArray:
        x = np.asarray(x, dtype=np.float64)
        dens = stats.norm.pdf(self._z(x)).mean(axis=-1) / self.bandwidth
        return np.where(x >= 0, dens / (1.0 - self._mass_below_zero), 0.0)

    def ppf(self, q: FloatArray) -> FloatArray:
        return np.interp(np.asarray(q, dtype=np.float64), self._grid_cdf, self._grid)


def _lower_hull(x: FloatArray, y: FloatArray) -> NDArray[np.int64]:
    """Indices of the lower convex hull of points sorted by x (Andrew's monotone chain)."""
    hull: list[int] = []
    for k in range(x.size):
        while len(hull) >= 2:
            i, j = hull[-2], hull[-1]
            if (y[j] - y[i]) * (x[k] - x[i]) >= (y[k] - y[i]) * (x[j] - x[i]):
                hull.pop()
            else:
                break
        hull.append(k)
    return np.asarray(hull, dtype=np.int64)


class VirtualCost:
    """The (ironed where needed) virtual cost function of one seller; call it on bids.

    ``reserve`` is the highest bid accepted (default: top of the support, or its 99.9 %
    quantile when unbounded). Regular priors use the exact formula; irregular ones use the
    hull slopes on an ``IRONING_GRID``-point quantile grid, linearly interpolated, which is
    non-decreasing by construction.
    """

    def __init__(self, prior: Prior, reserve: float | None = None) -> None:
        self.prior = prior
        low, high = prior.support
        if reserve is None:
            reserve = high if math.isfinite(high) else float(prior.ppf(UNBOUNDED_TOP_QUANTILE))
        if not (math.isfinite(reserve) and reserve > low):
            raise ValueError(f"reserve must be finite and above the prior's lowest cost {low:g}, "
                             f"got {reserve}")
        self.low = low
        self.reserve = float(reserve)
        q = np.linspace(0.0, float(prior.cdf(np.float64(self.reserve))), IRONING_GRID)
        costs = prior.ppf(q)
        # Check monotonicity on a quantile grid and a bid grid: a gap between two cost clusters
        # is one quantile step wide but many bid steps, and phi peaks inside it.
        probe = np.union1d(costs, np.linspace(low, self.reserve, IRONING_GRID))
        self.regular = bool(np.all(np.diff(self._raw(probe)) >= -1e-9 * max(1.0, self.reserve)))
        self.ironed_intervals: list[tuple[float, float]] = []
        self._q_mid = self._slopes = np.empty(0)
        if not self.regular:
            self._iron(q, costs)

    def _raw(self, b: FloatArray) -> FloatArray:
        b = np.asarray(b, dtype=np.float64)
        f = self.prior.pdf(b)
        big_f = self.prior.cdf(b)
        with np.errstate(divide="ignore", invalid="ignore"):
            rent = np.where(big_f > 0, big_f / f, 0.0)
        return b + rent

    def _iron(self, q: FloatArray, costs: FloatArray) -> None:
        h = q * costs
        hull = _lower_hull(q, h)
        slopes = np.diff(h[hull]) / np.diff(q[hull])
        # Every grid cell takes the slope of the hull segment that covers it.
        seg = np.searchsorted(q[hull], q[:-1], side="right") - 1
        self._slopes = slopes[np.clip(seg, 0, slopes.size - 1)]
        self._q_mid = 0.5 * (q[:-1] + q[1:])
        for a, b in itertools.pairwise(hull):
            if b - a > 1:
                self.ironed_intervals.append((float(costs[a]), float(costs[b])))

    def __call__(self, bid: ArrayLike) -> FloatArray:
        """phi(bid), elementwise; ``inf`` above the reserve, ``bid`` below the support."""
        b = np.asarray(bid, dtype=np.float64)
        phi = self._raw(b) if self.regular else np.interp(self.prior.cdf(b), self._q_mid, self._slopes)
        phi = np.where(b < self.low, b, phi)
        return np.where(b > self.reserve, np.inf, phi)

    def scalar(self, bid: float) -> float:
        """phi(bid) as a float."""
        return float(self(np.float64(bid)))

    def inverse(self, value: float) -> float:
        """The bid whose virtual cost is ``value``, clipped to [0, reserve]."""
        if value <= 0.0:
            return 0.0
        top = self.scalar(self.reserve)
        if value >= top:
            return self.reserve
        return float(optimize.brentq(lambda b: self.scalar(b) - value, 0.0, self.reserve,
                                     xtol=1e-14 * max(1.0, self.reserve), rtol=4 * np.finfo(float).eps))


def virtual_cost_vector(virtual_costs: Sequence[VirtualCost], bids: ArrayLike) -> FloatArray:
    """phi_i(b_i) for every seller (``inf`` above its reserve)."""
    return np.array([vc.scalar(b) for vc, b in zip(virtual_costs, np.asarray(bids, dtype=np.float64),
                                                    strict=True)])
