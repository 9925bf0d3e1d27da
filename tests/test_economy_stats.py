"""Statistics and the small models of the economy: tests, effect sizes, latency, trust, learning."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mercato.economy.config import Parameters
from mercato.economy.latency import bid_latency, realised_latency, tier_latency
from mercato.economy.learning import SuccessModel, sigmoid
from mercato.economy.metrics import price_volatility
from mercato.economy.stats import (
    bca_interval,
    cliffs_delta,
    holm,
    kruskal,
    magnitude,
    pairwise,
    spearman,
    synergy,
)
from mercato.economy.trust import update_trust

P = Parameters()


def test_cliffs_delta_and_magnitudes():
    assert cliffs_delta([3, 4, 5], [0, 1, 2]) == 1.0
    assert cliffs_delta([0, 1], [0, 1]) == 0.0
    assert cliffs_delta([1, 2], [1.5, 1.5]) == 0.0
    assert [magnitude(d) for d in (0.1, -0.2, 0.4, -0.9)] == ["negligible", "small", "medium", "large"]


def test_holm_matches_the_step_down_definition():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.5, float("nan"), 0.01])
    assert out[0] == pytest.approx(0.5) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_pairwise_uses_rank_sum_and_holm_within_the_family():
    rng = np.random.default_rng(0)
    groups = {"a": rng.normal(0, 1, 10), "b": rng.normal(3, 1, 10), "c": rng.normal(0, 1, 10)}
    rows = pairwise(groups)
    ab = next(r for r in rows if (r.a, r.b) == ("a", "b"))
    assert ab.p == pytest.approx(scipy_stats.mannwhitneyu(groups["a"], groups["b"]).pvalue)
    assert ab.p_holm == pytest.approx(holm([r.p for r in rows])[rows.index(ab)])
    assert ab.delta < -0.9 and ab.magnitude == "large"
    with pytest.raises(ValueError, match="names a group"):
        pairwise(groups, [("a", "z")])


def test_kruskal_and_spearman_return_nan_when_no_test_applies():
    assert all(np.isnan(kruskal([np.zeros(5), np.zeros(5)])))
    h, p = kruskal([np.arange(5), np.arange(5) + 10])
    assert h > 0 and p < 0.05
    assert all(np.isnan(spearman([1, 2, 3, 4], [0, 0, 0, 0])))
    assert spearman([1, 2, 3, 4], [1, 3, 5, 9])[0] == pytest.approx(1.0)


def test_bca_interval_brackets_the_mean_and_is_degenerate_for_constants():
    rng = np.random.default_rng(1)
    x = rng.normal(5, 1, 10)
    est = bca_interval(x)
    assert est.low < est.mean < est.high and est.mean == pytest.approx(x.mean())
    zero = bca_interval(np.zeros(10))
    assert (zero.mean, zero.low, zero.high) == (0.0, 0.0, 0.0)
    # BCa is undefined for this sample; the percentile interval is the fallback.
    skew = bca_interval(np.r_[np.zeros(9), 1.0])
    assert skew.low <= skew.mean <= skew.high


def test_synergy_is_zero_for_additive_effects_and_sign_of_interaction_otherwise():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 0.1, (4, 10))
    nn, hn, ns, hs = base + np.array([[10], [12], [7], [9]])  # +2 arch, -3 gov: additive
    est = synergy(nn, hn, ns, hs)
    assert est.mean == pytest.approx(hs.mean() - hn.mean() - ns.mean() + nn.mean())
    assert est.low <= 0 <= est.high
    sub = synergy(nn, hn, ns, hs - 2)
    assert sub.high < 0


def test_latency_models_follow_table_s3():
    load = np.array([100.0, 0.0, 495.0])
    lat = tier_latency(load, np.array([200.0, 300.0, 500.0]), 1.0, P)
    assert lat == pytest.approx([5 + 0.5 / 0.5 * 2, 15.0, 50 + 0.99 / 0.01 * 2])
    capped = tier_latency(np.array([500.0, 0.0, 0.0]), np.array([200.0, 300.0, 500.0]), 5.0, P)
    assert capped[0] == pytest.approx(5 + 500)
    est = bid_latency(np.array([100.0]), np.array([[2, 0, 2]]), np.array([0.5, 0.9, 2.0]), P)
    assert est[0] == pytest.approx(100 + 200 * ((2 * 0.5 + 2 * 1.0) / 4) ** 1.2)
    assert realised_latency(np.array([100.0]), np.array([-20.0]), P)[0] == 0.0


def test_trust_update_is_asymmetric_and_clipped():
    trust = np.array([0.8, 0.8, 0.8, 0.99, 0.05])
    agents = np.array([0, 1, 1, 3, 4])
    met = np.array([True, True, False, True, False])
    new = update_trust(trust, agents, met, P)
    assert new == pytest.approx([0.83, 0.72, 0.8, 1.0, 0.0])


def test_success_model_steps_towards_the_observed_rate_per_class():
    model = SuccessModel(3, 2.0, -2.0, 0.3)
    classes = np.array([0, 0, 1, 1])
    rho = np.full(4, 0.5)
    before = model.prob(np.array([0, 1, 2]), 0.5)
    model.update(classes, rho, np.array([False, False, True, True]))
    after = model.prob(np.array([0, 1, 2]), 0.5)
    assert after[0] < before[0] and after[1] > before[1] and after[2] == before[2]
    assert model.a[0] == pytest.approx(2.0 + 0.3 * (0 - sigmoid(1.0)))
    assert model.b[0] == pytest.approx(-2.0 + 0.3 * 0.5 * (0 - sigmoid(1.0)))
    with pytest.raises(ValueError):
        SuccessModel(0, 2.0, -2.0, 0.3)


def test_price_volatility_is_zero_for_still_prices_and_positive_for_oscillation():
    still = np.zeros((100, 3))
    assert price_volatility(still, P).tolist() == [0.0, 0.0, 0.0]
    flip = np.tile([[0.0], [0.2]], (50, 1))
    expected = np.diff(np.log(flip[P.burn_in_rounds:, 0] + P.price_tick)).std(ddof=1)
    assert price_volatility(flip, P)[0] == pytest.approx(expected)
    assert expected > 1.0
