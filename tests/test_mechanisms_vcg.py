"""VCG payments: fast residual-graph method against the naive N+1 oracle; properties; validation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.mechanisms import AuctionOutcome, run_vcg_auction, run_vcg_auction_naive
from mercato.mechanisms.bmatching import solve_usable, usable_weights
from mercato.mechanisms.properties import (
    check_dsic,
    check_individual_rationality,
    check_weak_budget_balance,
)
from mercato.mechanisms.vcg import auction_welfare, slot_values
from strategies import markets


def assert_well_formed(outcome: AuctionOutcome, n: int, m: int) -> None:
    """The fields every caller reads: shapes, integer agents or -1, nothing charged to a loser."""
    assert outcome.assignment.shape == (n,) and outcome.assignment.dtype.kind == "i"
    assert ((outcome.assignment >= -1) & (outcome.assignment < m)).all()
    for field in (outcome.payments, outcome.externality):
        assert field.shape == (n,) and field.dtype == np.float64
        assert (field[~outcome.matched] == 0.0).all()
    assert outcome.slot_prices.shape == (m,) and outcome.slot_prices.dtype == np.float64
    assert np.isfinite(outcome.slot_prices).all() and (outcome.slot_prices >= 0).all()
    assert isinstance(outcome.welfare, float) and isinstance(outcome.surplus, float)


def assert_same(fast: AuctionOutcome, naive: AuctionOutcome) -> None:
    n, m = fast.assignment.shape[0], fast.slot_prices.shape[0]
    assert_well_formed(fast, n, m)
    assert_well_formed(naive, n, m)
    assert fast.welfare == pytest.approx(naive.welfare, abs=1e-9)
    np.testing.assert_allclose(fast.payments, naive.payments, atol=1e-9, rtol=0)
    np.testing.assert_allclose(fast.externality, naive.externality, atol=1e-9, rtol=0)
    np.testing.assert_allclose(fast.slot_prices, naive.slot_prices, atol=1e-9, rtol=0)
    assert fast.surplus == pytest.approx(naive.surplus, abs=1e-8)


@settings(max_examples=200)
@given(markets(max_n=9, max_m=5))
def test_fast_payments_equal_naive(market):
    assert_same(run_vcg_auction(*market), run_vcg_auction_naive(*market))


@settings(max_examples=150)
@given(markets(max_n=9, max_m=5, scarce=True))
def test_fast_payments_equal_naive_scarce_capacity(market):
    values, _, capacity = market
    assert capacity.sum() < values.shape[0] or capacity.sum() == 0
    assert_same(run_vcg_auction(*market), run_vcg_auction_naive(*market))


@settings(max_examples=150)
@given(markets(max_n=9, max_m=5, sparse=0.75))
def test_fast_payments_equal_naive_sparse(market):
    assert_same(run_vcg_auction(*market), run_vcg_auction_naive(*market))


@settings(max_examples=300)
@given(markets(max_n=1, max_m=6), st.booleans())
def test_lone_request_closed_form_is_the_solvers_outcome(market, tie):
    """One request is decided without the solver; allocation, payments and slot prices must not change."""
    values, costs, capacity = market
    if tie and values.shape[1] > 1:  # an exact tie: the solver's own tie-break must decide
        values[0, 1], costs[0, 1] = values[0, 0], costs[0, 0]
    fast = run_vcg_auction(values, costs, capacity)
    weights = usable_weights(auction_welfare(values, costs))
    solved = solve_usable(weights, capacity)
    assert fast.assignment.tolist() == solved.tolist()
    expected_prices = slot_values(weights, solved)
    np.testing.assert_array_equal(fast.slot_prices, expected_prices)
    assert_same(fast, run_vcg_auction_naive(values, costs, capacity))


def test_fast_payments_equal_naive_larger_instances():
    rng = np.random.default_rng(7)
    for _ in range(40):
        n, m = rng.integers(20, 60), rng.integers(5, 20)
        values = rng.uniform(0, 10, (n, m))
        values[rng.random((n, m)) < 0.5] = np.nan
        costs = rng.uniform(0, 8, (n, m))
        capacity = rng.integers(0, 5, m)
        assert_same(run_vcg_auction(values, costs, capacity),
                    run_vcg_auction_naive(values, costs, capacity))


@settings(max_examples=40)
@given(markets(max_n=6, max_m=3))
def test_truthful_individually_rational_budget_balanced(market):
    values, costs, capacity = market
    outcome = run_vcg_auction(values, costs, capacity)
    assert check_individual_rationality(values, outcome).holds()
    assert check_weak_budget_balance(costs, outcome).holds()
    assert outcome.surplus >= -1e-9
    report = check_dsic(values, costs, capacity)
    assert report.tried > 0
    assert report.holds(), report


def first_price(values: np.ndarray, costs: np.ndarray, capacity) -> AuctionOutcome:
    """Same allocation, but each winner pays its reported value: not truthful."""
    outcome = run_vcg_auction(values, costs, capacity)
    rows = np.flatnonzero(outcome.matched)
    payments = np.zeros_like(outcome.payments)
    payments[rows] = values[rows, outcome.assignment[rows]]
    externality = np.zeros_like(payments)
    externality[rows] = payments[rows] - costs[rows, outcome.assignment[rows]]
    return replace(outcome, payments=payments, externality=externality,
                   surplus=float(externality.sum()))


def test_checker_catches_first_price():
    rng = np.random.default_rng(3)
    values, costs = rng.uniform(5, 10, (4, 2)), rng.uniform(0, 2, (4, 2))
    report = check_dsic(values, costs, [1, 1], mechanism=first_price)
    assert not report.holds()
    assert report.max_gain > 0.5
    # and the truthful mechanism passes on the very same market
    assert check_dsic(values, costs, [1, 1]).holds()


def test_ir_checker_can_fail():
    values, costs = np.array([[5.0]]), np.array([[1.0]])
    honest = run_vcg_auction(values, costs, [1])
    overcharged = replace(honest, payments=np.array([7.0]), externality=np.array([6.0]), surplus=6.0)
    assert check_individual_rationality(values, honest).holds()
    assert check_individual_rationality(values, overcharged).worst == pytest.approx(2.0)
    undercharged = replace(honest, payments=np.array([0.5]), externality=np.array([-0.5]), surplus=-0.5)
    assert check_weak_budget_balance(costs, undercharged).worst == pytest.approx(0.5)


def test_known_payments():
    # Two buyers, one slot: the loser's welfare (4) sets the winner's externality.
    values = np.array([[10.0], [6.0]])
    costs = np.array([[1.0], [2.0]])
    outcome = run_vcg_auction(values, costs, [1])
    assert outcome.assignment.tolist() == [0, -1]
    assert outcome.payments.tolist() == pytest.approx([1.0 + 4.0, 0.0])
    assert outcome.surplus == pytest.approx(4.0)
    # Enough slots: nobody imposes an externality, everyone pays cost.
    outcome = run_vcg_auction(values, costs, [2])
    assert outcome.payments.tolist() == pytest.approx([1.0, 2.0])
    assert outcome.surplus == pytest.approx(0.0)


def test_chain_externality():
    # Buyer 0 takes agent 0; buyer 1 would move there from agent 1, letting buyer 2 into agent 1.
    values = np.array([[10.0, np.nan], [8.0, 5.0], [np.nan, 4.0]])
    costs = np.zeros((3, 2))
    fast, naive = run_vcg_auction(values, costs, [1, 1]), run_vcg_auction_naive(values, costs, [1, 1])
    assert_same(fast, naive)
    assert fast.assignment.tolist() == [0, 1, -1]
    assert fast.payments[0] == pytest.approx(8.0 + 4.0 - 5.0)


@pytest.mark.parametrize(
    ("values", "costs", "capacity", "message"),
    [
        (np.ones((2, 2)), np.ones((2, 3)), [1, 1],
         r"^shape mismatch: values is \(2, 2\) but costs is \(2, 3\)$"),
        (np.ones((2, 2)), np.array([[1.0, 1.0], [-np.inf, 1.0]]), [1, 1],
         r"^costs contains -inf at \(1, 0\)$"),
        (np.ones((2, 2)), np.array([[1.0, np.nan], [1.0, 1.0]]), [1, 1], r"costs contains NaN at \(0, 1\)"),
        (np.ones((2, 2)), np.ones((2, 2)), [1, -2], "capacity must be non-negative"),
        (np.array([[np.inf, 1.0]]), np.ones((1, 2)), [1, 1], r"values contains \+inf"),
        ([["x"]], [[1.0]], [1], "values must be numeric"),
        (np.ones((1, 1)), [[None]], [1], "costs contains NaN"),
    ],
)
def test_bad_input_names_the_problem(values, costs, capacity, message):
    with pytest.raises(ValueError, match=message):
        run_vcg_auction(values, costs, capacity)


@pytest.mark.parametrize(("shape", "capacity"), [((0, 3), 1), ((3, 0), 1), ((1, 0), 1), ((4, 3), 0),
                                                ((1, 3), 0)])
def test_empty_auction(shape, capacity):
    # No request, no agent or no slot: every field is there, zero, and ready for the next round.
    n, m = shape
    for run in (run_vcg_auction, run_vcg_auction_naive):
        outcome = run(np.ones(shape), np.zeros(shape), np.full(m, capacity))
        assert_well_formed(outcome, n, m)
        assert (outcome.assignment == -1).all() and not outcome.matched.any()
        assert outcome.welfare == 0.0 and outcome.surplus == 0.0
        # One more slot would go to a waiting request (welfare 1) if there is one.
        assert (outcome.slot_prices == (1.0 if n else 0.0)).all()
        again = run_vcg_auction(np.ones(shape), np.zeros(shape), np.full(m, capacity),
                                warm_prices=outcome.slot_prices)
        assert_well_formed(again, n, m)


def test_an_infinite_cost_forbids_the_pair():
    # +inf cost is the documented way to forbid a pair: the request goes elsewhere or nowhere.
    values = np.array([[10.0, 6.0], [9.0, 9.0]])
    costs = np.array([[np.inf, 1.0], [np.inf, np.inf]])
    for run in (run_vcg_auction, run_vcg_auction_naive):
        outcome = run(values, costs, [2, 2])
        assert outcome.assignment.tolist() == [1, -1]
        assert outcome.welfare == pytest.approx(5.0)
        assert outcome.payments.tolist() == pytest.approx([1.0, 0.0])
    welfare = auction_welfare(values, costs)
    assert welfare.tolist() == [[-np.inf, 5.0], [-np.inf, -np.inf]]


def test_forbidden_pairs_come_out_of_the_welfare_as_minus_infinity():
    values = np.array([[np.nan, 3.0, -np.inf], [4.0, 2.0, 7.0]])
    costs = np.array([[1.0, np.inf, 0.0], [np.inf, 0.5, 2.0]])
    welfare = auction_welfare(values, costs)
    assert welfare.tolist() == [[-np.inf, -np.inf, -np.inf], [-np.inf, 1.5, 5.0]]


def test_forbidden_pairs_in_a_realistic_market_are_never_used():
    rng = np.random.default_rng(23)
    n, m = 200, 100
    values = rng.uniform(5.0, 15.0, (n, 1)) + np.linspace(10.0, 0.0, m) + rng.normal(0, 1, (n, m))
    costs = rng.uniform(0.0, 3.0, (n, m))
    values[rng.random((n, m)) < 0.1] = np.nan
    costs[rng.random((n, m)) < 0.1] = np.inf
    capacity = rng.integers(1, 6, m)
    outcome = run_vcg_auction(values, costs, capacity)
    assert_well_formed(outcome, n, m)
    rows = np.flatnonzero(outcome.matched)
    chosen = auction_welfare(values, costs)[rows, outcome.assignment[rows]]
    assert np.isfinite(chosen).all() and (chosen > 0).all()
    plain = np.where(np.isnan(values) | np.isinf(costs), np.nan, values - costs)
    assert outcome.welfare == pytest.approx(run_vcg_auction(plain, np.zeros((n, m)), capacity).welfare)


def test_fast_payments_equal_naive_with_crowded_agents():
    # More than 32 requests at one agent takes the reduceat path of the slot-value pass.
    rng = np.random.default_rng(11)
    for _ in range(5):
        n, m = 90, 3
        values = rng.uniform(0, 10, (n, m)) + np.array([6.0, 0.0, 0.0])
        values[rng.random((n, m)) < 0.3] = -np.inf
        costs = rng.uniform(0, 6, (n, m))
        capacity = np.array([45, 30, 10])
        fast = run_vcg_auction(values, costs, capacity)
        assert np.bincount(fast.assignment[fast.matched]).max() > 32
        assert_same(fast, run_vcg_auction_naive(values, costs, capacity))


def assert_same_outcome(warm: AuctionOutcome, cold: AuctionOutcome) -> None:
    assert_same(warm, cold)
    np.testing.assert_allclose(warm.slot_prices, cold.slot_prices, atol=1e-9, rtol=0)


@settings(max_examples=150)
@given(markets(max_n=9, max_m=5), st.integers(0, 2**32 - 1))
def test_warm_prices_never_change_the_outcome(market, seed):
    values, costs, capacity = market
    prices = np.random.default_rng(seed).normal(0.0, 20.0, values.shape[1])  # any finite guess
    warm = run_vcg_auction(values, costs, capacity, warm_prices=prices)
    cold = run_vcg_auction(values, costs, capacity)
    usable = usable_weights(auction_welfare(values, costs))
    gains = np.sort(usable[usable > 0])
    if (np.diff(gains) > 1e-9).all():
        assert_same_outcome(warm, cold)
    else:  # a tie (values have 3 decimals): the warm start may pick another optimum
        assert_well_formed(warm, *values.shape)
        assert warm.welfare == pytest.approx(cold.welfare, abs=1e-9)
        assert check_individual_rationality(values, warm).holds()
        assert check_weak_budget_balance(costs, warm).holds()


@pytest.mark.parametrize("equal_slots", [False, True])
def test_warm_prices_on_a_contested_market_match_the_oracle(equal_slots):
    # Every request prefers the same cheap agents: the case warm prices are for. Sixty requests
    # are enough for the exact agent pruning to run (both its equal- and unequal-slot paths).
    rng = np.random.default_rng(5)
    n, m = 60, 40
    cheapness = np.linspace(10.0, 0.0, m)
    for _ in range(6):
        values = rng.uniform(5, 15, (n, 1)) + cheapness + rng.normal(0, 1, (n, m))
        costs = rng.uniform(0, 3, (n, m))
        capacity = np.full(m, 4) if equal_slots else rng.integers(1, 6, m)
        cold = run_vcg_auction(values, costs, capacity)
        naive = run_vcg_auction_naive(values, costs, capacity)
        assert_same(cold, naive)
        near = cold.slot_prices + rng.normal(0, 0.5, m)  # last round's prices, roughly
        assert_same_outcome(run_vcg_auction(values, costs, capacity, warm_prices=near), cold)
        assert_same_outcome(run_vcg_auction(values, costs, capacity, warm_prices=cold.slot_prices), cold)


def test_slot_prices_price_one_more_request():
    # A second buyer arriving with exactly the slot price as welfare would be indifferent.
    values, costs = np.array([[9.0], [4.0]]), np.zeros((2, 1))
    outcome = run_vcg_auction(values, costs, [1])
    assert outcome.slot_prices[0] == pytest.approx(4.0)
    assert outcome.payments[0] == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("prices", "message"),
    [([1.0], r"one entry per agent \(2\)"), ([0.0, np.nan], "agent 1 is not"), ([["a", "b"]], "numeric")],
)
def test_bad_warm_prices_name_the_problem(prices, message):
    with pytest.raises(ValueError, match=message):
        run_vcg_auction(np.ones((2, 2)), np.zeros((2, 2)), [1, 1], warm_prices=prices)
