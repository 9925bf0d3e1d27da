"""Virtual costs and ironing against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from mercato.mechanisms.myerson import (
    EmpiricalPrior,
    LogNormalPrior,
    Prior,
    TruncatedNormalPrior,
    UniformPrior,
    VirtualCost,
)


def test_uniform_virtual_cost_is_two_b_minus_low():
    vc = VirtualCost(UniformPrior(1.0, 3.0))
    b = np.linspace(1.0, 3.0, 9)
    assert vc.regular and vc.ironed_intervals == []
    np.testing.assert_allclose(vc(b), 2 * b - 1.0, rtol=1e-12)
    assert vc.scalar(0.5) == 0.5  # below the support: no information rent
    assert vc.scalar(3.0 + 1e-9) == math.inf  # above the reserve: refused
    assert vc.reserve == 3.0


def test_uniform_inverse_is_closed_form():
    vc = VirtualCost(UniformPrior(0.4, 2.0))
    for phi in (0.1, 0.4, 1.0, 2.5, 3.6):
        expected = phi if phi <= 0.4 else min((phi + 0.4) / 2, 2.0)
        assert vc.inverse(phi) == pytest.approx(expected, abs=1e-12)
    assert vc.inverse(10.0) == 2.0


def test_reserve_below_support_top_refuses_higher_bids():
    vc = VirtualCost(UniformPrior(0.0, 4.0), reserve=2.0)
    assert vc.scalar(1.5) == pytest.approx(3.0)
    assert vc.scalar(2.5) == math.inf


@pytest.mark.parametrize("prior", [TruncatedNormalPrior(2.0, 1.0, 0.0, 5.0), LogNormalPrior(2.0, 0.6)])
def test_log_concave_and_log_normal_priors_are_regular_and_match_formula(prior):
    vc = VirtualCost(prior)
    b = np.linspace(0.2, min(4.5, vc.reserve), 25)
    assert vc.regular
    np.testing.assert_allclose(vc(b), b + prior.cdf(b) / prior.pdf(b), rtol=1e-10)


class TwoStepUniform(Prior):
    """Density ``a`` on [0, 1] and ``1 - a`` on [1, 2]: phi drops at 1 when a < 1/2."""

    def __init__(self, a: float) -> None:
        self.a = a

    @property
    def support(self) -> tuple[float, float]:
        return (0.0, 2.0)

    def cdf(self, x):
        x = np.clip(np.asarray(x, dtype=float), 0, 2)
        return np.where(x <= 1, self.a * x, self.a + (1 - self.a) * (x - 1))

    def pdf(self, x):
        x = np.asarray(x, dtype=float)
        return np.where((x >= 0) & (x <= 1), self.a, np.where((x > 1) & (x <= 2), 1 - self.a, 0.0))

    def ppf(self, q):
        q = np.asarray(q, dtype=float)
        return np.where(q <= self.a, q / self.a, 1 + (q - self.a) / (1 - self.a))


def test_ironing_matches_closed_form_hull_of_two_step_uniform():
    a = 0.25
    b = 1 - a
    # H(q) = q * c(q) is q^2 / a, then q (1 + (q - a) / b); the hull bridges the concave kink at
    # q = a with a line tangent to both parabolas, of slope s.
    def gap(s: float) -> float:
        q1, q2 = a * s / 2, (b * (s - 1) + a) / 2
        h1, h2 = q1 ** 2 / a, q2 * (1 + (q2 - a) / b)
        return h2 - h1 - s * (q2 - q1)
    s = optimize.brentq(gap, 1 + a / b + 1e-9, 2 - 1e-9)
    lo_bid, hi_bid = (a * s / 2) / a, 1 + ((b * (s - 1) + a) / 2 - a) / b
    vc = VirtualCost(TwoStepUniform(a))
    assert not vc.regular
    assert len(vc.ironed_intervals) == 1
    start, end = vc.ironed_intervals[0]
    assert start == pytest.approx(lo_bid, abs=2e-3) and end == pytest.approx(hi_bid, abs=2e-3)
    inside = np.linspace(lo_bid + 0.01, hi_bid - 0.01, 7)
    np.testing.assert_allclose(vc(inside), s, rtol=2e-3)
    outside = np.array([0.2, 0.5, hi_bid + 0.1, 1.9])
    np.testing.assert_allclose(vc(outside), [2 * 0.2, 2 * 0.5, 2 * (hi_bid + 0.1) - 1 + a / b,
                                             2 * 1.9 - 1 + a / b], rtol=2e-3)


def test_ironed_empirical_prior_is_monotone():
    rng = np.random.default_rng(0)
    samples = np.concatenate([rng.normal(1.0, 0.1, 60), rng.normal(4.0, 0.1, 60)])
    vc = VirtualCost(EmpiricalPrior(samples))
    grid = np.linspace(0, vc.reserve, 2001)
    raw = grid + vc.prior.cdf(grid) / vc.prior.pdf(grid)
    assert np.any(np.diff(raw) < 0)  # the raw phi really is irregular
    assert not vc.regular and vc.ironed_intervals
    assert np.all(np.diff(vc(grid)) >= -1e-12)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: UniformPrior(2.0, 1.0), "low < high"),
    (lambda: LogNormalPrior(-1.0, 0.5), "median"),
    (lambda: EmpiricalPrior([1.0]), "at least 2"),
    (lambda: EmpiricalPrior([1.0, -2.0]), ">= 0"),
    (lambda: VirtualCost(UniformPrior(1.0, 2.0), reserve=0.5), "reserve"),
])
def test_bad_priors_are_rejected(build, message):
    with pytest.raises(ValueError, match=message):
        build()
