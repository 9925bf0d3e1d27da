"""Allocation rules of the economy: feasibility, ordering, the congestion-aware stop, prices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.economy.book import Allocation, PoolSpec, RoundBook, expected_welfare_prefix, pack
from mercato.economy.config import Parameters
from mercato.economy.integrator import Integrator, slice_capacity
from mercato.economy.learning import sigmoid
from mercato.economy.mechanisms import make_mechanism, mechanism_names, register_mechanism

PARAMS = Parameters()


def book(bids, bundles, capacity=(10.0, 10.0, 10.0), *, slices=None, a=(2.0,), b=(0.0,),
         classes=None, deadlines=None, efficiency=1.0, seed=0, admission="paper") -> RoundBook:
    bids = np.asarray(bids, dtype=np.float64)
    n = bids.size
    bundles = np.asarray(bundles, dtype=np.int64).reshape(n, 3)
    pool = PoolSpec("all", np.asarray(capacity, dtype=np.float64), bundles.mean(axis=0) if n else
                    np.ones(3), efficiency, slices, admission)
    return RoundBook(round=0, bids=bids, weights=bids.copy(),
                     classes=np.zeros(n, dtype=np.int64) if classes is None else np.asarray(classes),
                     success_a=np.asarray(a, dtype=np.float64), success_b=np.asarray(b, dtype=np.float64),
                     predicted_rho=0.0, bundles=bundles, templates=np.zeros(n, dtype=np.int64),
                     deadlines=np.full(n, 150.0) if deadlines is None else np.asarray(deadlines, float),
                     agents=np.arange(n), pool=pool, rng=np.random.default_rng(seed))


def test_pack_follows_the_order_and_skips_tasks_that_do_not_fit():
    bk = book([1, 1, 1, 1], [[6, 0, 0], [6, 0, 0], [3, 1, 0], [1, 9, 0]])
    assert pack(bk, np.array([0, 1, 2, 3])).tolist() == [0, 2, 3]
    assert pack(bk, np.array([3, 2, 1, 0])).tolist() == [3, 2, 1]


def test_pack_on_a_slice_takes_the_first_slice_capacity_tasks():
    bk = book([1] * 5, [[9, 9, 9]] * 5, slices=3)
    assert pack(bk, np.array([4, 2, 0, 1, 3])).tolist() == [4, 2, 0]


@settings(max_examples=40)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 12))
def test_pack_is_feasible_and_maximal(seed, n):
    rng = np.random.default_rng(seed)
    bk = book(rng.random(n), rng.integers(0, 5, (n, 3)), capacity=rng.integers(3, 15, 3))
    chosen = pack(bk, rng.permutation(n))
    load = bk.bundles[chosen].sum(axis=0)
    assert (load <= bk.pool.capacity).all()
    left = np.setdiff1d(np.arange(n), chosen)
    # Nothing left out would still fit: greedy packing is maximal.
    assert all((load + bk.bundles[k] > bk.pool.capacity).any() for k in left)


@settings(max_examples=40)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 9))
def test_expected_welfare_prefix_is_the_best_prefix(seed, n):
    rng = np.random.default_rng(seed)
    bk = book(rng.uniform(0.1, 2, n), rng.integers(1, 4, (n, 3)), capacity=(12.0, 12.0, 12.0),
              a=rng.uniform(-1, 4, 3), b=rng.uniform(-8, 0, 3), classes=rng.integers(0, 3, n),
              efficiency=rng.choice([0.75, 1.0]))
    seq = rng.permutation(n)
    kept = expected_welfare_prefix(bk, seq)

    def value(m: int) -> float:
        head = seq[:m]
        rho = (bk.bundles[head].sum(axis=0) * bk.pool.execution_efficiency / bk.pool.capacity).max()
        return float((sigmoid(bk.success_a[bk.classes[head]] + bk.success_b[bk.classes[head]] * rho)
                      * bk.weights[head]).sum())

    best = max(value(m) for m in range(n + 1))
    assert kept.tolist() == seq[: kept.size].tolist()
    assert value(kept.size) == pytest.approx(best)


def test_flat_success_model_keeps_everything_steep_one_stops_early():
    bundles = [[2, 0, 0]] * 5
    flat = book([1.0] * 5, bundles, a=(2.0,), b=(0.0,))
    assert expected_welfare_prefix(flat, np.arange(5)).size == 5
    steep = book([1.0] * 5, bundles, a=(6.0,), b=(-12.0,))
    assert 0 < expected_welfare_prefix(steep, np.arange(5)).size < 5


@pytest.mark.parametrize("name", ["value_greedy", "market"])
def test_paper_admission_fills_capacity_and_welfare_aware_admission_stops_early(name):
    """Under a steep success model the next task lowers expected welfare: only the variant stops."""
    bundles = [[2, 0, 0]] * 5
    paper_rule = make_mechanism(name, book([], []).pool, PARAMS).allocate(
        book([1.0] * 5, bundles, a=(6.0,), b=(-12.0,)))
    variant = make_mechanism(name, book([], []).pool, PARAMS).allocate(
        book([1.0] * 5, bundles, a=(6.0,), b=(-12.0,), admission="welfare_aware"))
    assert paper_rule.admitted.sum() == 5
    assert 0 < variant.admitted.sum() < 5


def test_value_greedy_admits_highest_bids_and_random_packs_to_capacity():
    bids = [0.1, 0.9, 0.5, 0.7]
    bk = book(bids, [[5, 0, 0]] * 4)
    greedy = make_mechanism("value_greedy", bk.pool, PARAMS).allocate(bk)
    assert np.flatnonzero(greedy.admitted).tolist() == [1, 3]
    rnd = make_mechanism("random", bk.pool, PARAMS).allocate(bk)
    assert rnd.admitted.sum() == 2 and not rnd.payments.any() and rnd.prices.size == 0


def test_edf_prefers_the_earliest_deadlines():
    bk = book([1, 1, 1], [[5, 0, 0]] * 3, deadlines=[200, 100, 150])
    out = make_mechanism("edf", bk.pool, PARAMS).allocate(bk)
    assert np.flatnonzero(out.admitted).tolist() == [1, 2]


def test_market_prices_rise_with_excess_demand_and_charge_bundle_prices():
    market = make_mechanism("market", book([], []).pool, PARAMS)
    scarce = book([1.0] * 8, [[3, 0, 0]] * 8)
    out = market.allocate(scarce)
    assert out.prices[0] > PARAMS.price_init and out.prices[1] == 0.0 and out.prices[2] == 0.0
    cost = scarce.bundles @ out.prices
    assert np.allclose(out.payments[out.admitted], cost[out.admitted])
    assert (scarce.bundles[out.admitted].sum(axis=0) <= scarce.pool.capacity).all()
    abundant = market.allocate(book([1.0] * 2, [[1, 1, 1]] * 2))
    assert (abundant.prices < out.prices).all() or (abundant.prices == 0).all()


def test_integrator_smooths_its_posted_price_with_the_ema():
    pool = book([1.0], [[1, 1, 1]], slices=4).pool
    integrator = Integrator(pool, PARAMS)
    for _ in range(5):
        before = integrator.posted
        out = integrator.allocate(book([2.0] * 20, [[1, 1, 1]] * 20, slices=4))
        resource = (1 + PARAMS.markup) * float(pool.mean_bundle @ integrator.tier_prices)
        target = max(resource, float(integrator.scarcity_price[0]))
        assert integrator.posted == pytest.approx(PARAMS.ema * before + (1 - PARAMS.ema) * target)
        assert out.prices.tolist() == [integrator.posted]
        assert out.admitted.sum() <= 4
        assert np.allclose(out.payments[out.admitted], integrator.posted)
    # Twenty bidders for four slices: scarcity pushes the posted price up from its start.
    assert integrator.posted > PARAMS.price_init
    with pytest.raises(ValueError, match="slice capacity"):
        Integrator(book([1.0], [[1, 1, 1]]).pool, PARAMS)


def test_slice_capacity_is_the_bottleneck_tier_of_the_max_flow():
    cap = slice_capacity(np.array([200.0, 300.0, 500.0]), np.array([5.0, 4.0, 3.0]), 0.85)
    assert cap == min(int(200 / (5 * 0.85)), int(300 / (4 * 0.85)), int(500 / (3 * 0.85)))
    assert slice_capacity(np.array([200.0, 300.0, 500.0]), np.array([2.0, 4.0, 5.0]), 1.0) == 75


def test_custom_mechanisms_plug_in_by_name():
    class AdmitNone:
        name = "none"

        def allocate(self, bk: RoundBook) -> Allocation:
            return Allocation(np.zeros(bk.size, bool), np.zeros(bk.size), np.zeros(0))

    register_mechanism("test_admit_none", lambda pool, params: AdmitNone())
    assert "test_admit_none" in mechanism_names()
    bk = book([1.0], [[1, 1, 1]])
    assert not make_mechanism("test_admit_none", bk.pool, PARAMS).allocate(bk).admitted.any()
    with pytest.raises(ValueError, match="unknown mechanism 'vickrey'"):
        make_mechanism("vickrey", bk.pool, PARAMS)
