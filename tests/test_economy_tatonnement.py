"""Tâtonnement: convergence on a gross-substitutes market, direction of moves, clipping, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.mechanisms.tatonnement import bundle_demand, tatonnement, unit_demand


def ces_demand(budgets: np.ndarray, weights: np.ndarray, sigma: float):
    """Aggregate CES demand (sigma > 1: goods are gross substitutes)."""

    def demand(prices: np.ndarray) -> np.ndarray:
        share = weights**sigma * prices ** (1 - sigma)
        return (budgets[:, None] * share / share.sum(axis=1, keepdims=True)).sum(axis=0) / prices

    return demand


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), sigma=st.floats(1.5, 4.0))
def test_converges_on_small_gross_substitutes_market(seed, sigma):
    rng = np.random.default_rng(seed)
    budgets = rng.uniform(1, 3, 4)
    weights = rng.uniform(0.5, 2, (4, 3))
    supply = rng.uniform(1, 4, 3)
    demand = ces_demand(budgets, weights, sigma)
    result = tatonnement(demand, supply, np.ones(3), iterations=3000, step=0.05, floor=1e-6)
    # Market clears: every good's excess demand vanishes relative to its supply ...
    assert np.abs(demand(result.prices) - supply).max() / supply.min() < 1e-6
    # ... and the budgets are spent exactly at the equilibrium prices (Walras' law).
    assert result.prices @ supply == pytest.approx(budgets.sum(), rel=1e-6)


def test_unit_demand_market_settles_where_nobody_is_overdemanded():
    # Two goods, three unit-demand buyers: buyer 0 loves good 0, buyer 1 good 1, buyer 2 is lukewarm.
    values = np.array([[5.0, 1.0], [1.0, 4.0], [2.0, 2.0]])
    result = tatonnement(unit_demand(values), [1.0, 1.0], [0.0, 0.0], iterations=400, step=0.01)
    prices = result.prices
    # Buyer 2's value (2) must be priced out of both goods, buyers 0 and 1 must still want theirs.
    assert 1.9 <= prices[0] <= 5.0 and 1.9 <= prices[1] <= 4.0
    assert (unit_demand(values)(prices + 0.05) <= 1).all()


def test_prices_rise_under_excess_demand_and_fall_to_floor_under_excess_supply():
    values = np.full(10, 2.0)
    bundles = np.ones((10, 1))
    up = tatonnement(bundle_demand(values, bundles), [5.0], [0.0], iterations=3, step=0.25)
    assert up.prices[0] == pytest.approx(3 * 0.25 * (10 - 5) / 5)
    down = tatonnement(bundle_demand(values, bundles), [100.0], [0.5], iterations=15, step=0.25)
    assert down.prices[0] == 0.0
    capped = tatonnement(bundle_demand(np.full(10, 1e6), bundles), [1.0], [0.0], iterations=50,
                         step=10.0, cap=7.0)
    assert capped.prices[0] == 7.0


def test_bundle_demand_counts_only_bundles_worth_their_price():
    demand = bundle_demand([1.0, 3.0], [[1, 0, 2], [0, 1, 1]])
    assert demand(np.array([0.5, 0.5, 0.5])).tolist() == [0.0, 1.0, 1.0]
    assert demand(np.zeros(3)).tolist() == [1.0, 1.0, 3.0]


@pytest.mark.parametrize("kwargs, message", [
    ({"supply": [0.0], "prices": [0.0]}, "supply must be positive"),
    ({"supply": [1.0, 2.0], "prices": [0.0]}, "equal length"),
    ({"supply": [1.0], "prices": [0.0], "step": 0.0}, "step must be > 0"),
    ({"supply": [1.0], "prices": [0.0], "iterations": -1}, "iterations"),
    ({"supply": [1.0], "prices": [0.0], "floor": 5.0, "cap": 1.0}, "below cap"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    args = {"iterations": 1, "step": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        tatonnement(lambda p: p, **args)
    with pytest.raises(ValueError, match="values"):
        bundle_demand([1.0, 2.0], [[1, 1]])
