"""Buyer valuation (IEMAS Eq. 1 in credits): every term against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from mercato.gateway.core.valuation import ValuationSettings, buyer_values, realised_value

SETTINGS = ValuationSettings()  # Q = 200 credits, K = 1000 credits per second
SMALL = ValuationSettings(quality_value=50.0, latency_penalty_per_s=20.0)

# Two buyers, two backends. Buyer 0: bid 2, delta 0.25 (patient about quality, cares about time);
# buyer 1: bid 0.5, delta 1 (quality only).
BIDS = np.array([2.0, 0.5])
DELTAS = np.array([0.25, 1.0])
QUALITY = np.array([[0.8, 0.4], [0.5, 1.0]])
LATENCY_S = np.array([[0.1, 0.3], [2.0, 0.05]])


def test_default_scales_are_documented_ones():
    assert (SETTINGS.quality_value, SETTINGS.latency_penalty_per_s) == (200.0, 1000.0)


def test_buyer_values_by_hand():
    # v = b * (delta * Q * P - (1 - delta) * K * L)
    expected = [
        [2.0 * (0.25 * 200 * 0.8 - 0.75 * 1000 * 0.1), 2.0 * (0.25 * 200 * 0.4 - 0.75 * 1000 * 0.3)],
        [0.5 * (1.0 * 200 * 0.5 - 0.0), 0.5 * (1.0 * 200 * 1.0 - 0.0)],
    ]
    assert expected == [[-70.0, -410.0], [50.0, 100.0]]
    np.testing.assert_allclose(buyer_values(BIDS, DELTAS, QUALITY, LATENCY_S, SETTINGS), expected, rtol=1e-12)


def test_buyer_values_use_the_settings_scales():
    expected = [
        [2.0 * (0.25 * 50 * 0.8 - 0.75 * 20 * 0.1), 2.0 * (0.25 * 50 * 0.4 - 0.75 * 20 * 0.3)],
        [0.5 * 50 * 0.5, 0.5 * 50 * 1.0],
    ]
    np.testing.assert_allclose(buyer_values(BIDS, DELTAS, QUALITY, LATENCY_S, SMALL), expected, rtol=1e-12)


@pytest.mark.parametrize("delta", [0.0, 0.3, 0.5, 0.99])
def test_waiting_always_costs_value_and_quality_always_adds_it(delta):
    # The sign of each term: a slower backend is never worth more, a better one never less.
    def value(quality: float, latency_s: float) -> float:
        return float(buyer_values(np.array([1.5]), np.array([delta]), np.array([[quality]]),
                                  np.array([[latency_s]]), SETTINGS)[0, 0])

    assert value(0.9, 0.9) < value(0.9, 0.2)
    if delta > 0:
        assert value(0.6, 0.2) < value(0.9, 0.2)
    # one second of waiting weighs (1 - delta) * K credits per unit of bid
    assert value(0.9, 0.2) - value(0.9, 1.2) == pytest.approx(1.5 * (1.0 - delta) * 1000.0)


def test_a_zero_bid_values_nothing():
    values = buyer_values(np.array([0.0]), np.array([0.5]), np.array([[0.9]]), np.array([[0.4]]), SETTINGS)
    assert values.tolist() == [[0.0]]


@pytest.mark.parametrize(
    ("correct", "expected"),
    [
        (None, 2.0 * (0.25 * 200 * 0.8 - 0.75 * 1000 * 0.1)),  # unknown: the expected quality 0.8
        (True, 2.0 * (0.25 * 200 * 1.0 - 0.75 * 1000 * 0.1)),  # a right answer counts in full
        (False, 2.0 * (0.0 - 0.75 * 1000 * 0.1)),  # a wrong one is worth nothing, and the wait still costs
    ],
)
def test_realised_value_by_hand(correct, expected):
    assert realised_value(2.0, 0.25, correct, 0.1, SETTINGS, expected_quality=0.8) == pytest.approx(expected)


def test_realised_value_uses_the_settings_and_matches_the_predicted_value():
    assert realised_value(0.5, 0.6, True, 2.0, SMALL, 0.3) == pytest.approx(0.5 * (0.6 * 50 - 0.4 * 20 * 2.0))
    unknown = realised_value(3.0, 0.6, None, 0.25, SMALL, 0.3)
    assert unknown == pytest.approx(3.0 * (0.6 * 50 * 0.3 - 0.4 * 20 * 0.25))
    # With correctness unknown, what was realised is what was predicted for the same QoS.
    predicted = buyer_values(BIDS, DELTAS, QUALITY, LATENCY_S, SETTINGS)
    for i in range(2):
        for j in range(2):
            realised = realised_value(float(BIDS[i]), float(DELTAS[i]), None, float(LATENCY_S[i, j]),
                                      SETTINGS, float(QUALITY[i, j]))
            assert realised == pytest.approx(predicted[i, j])


def test_realised_value_falls_as_the_wait_grows():
    quick = realised_value(1.0, 0.5, True, 0.1, SETTINGS, 0.5)
    slow = realised_value(1.0, 0.5, True, 1.1, SETTINGS, 0.5)
    assert quick - slow == pytest.approx(0.5 * 1000.0)
