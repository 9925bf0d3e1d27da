"""VCG payments: fast residual-graph method against the naive N+1 oracle; properties; validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from mercato.mechanisms import AuctionOutcome, run_vcg_auction, run_vcg_auction_naive
from mercato.mechanisms.properties import (
    check_dsic,
    check_individual_rationality,
    check_weak_budget_balance,
)
from strategies import markets


def assert_same(fast: AuctionOutcome, naive: AuctionOutcome) -> None:
    assert fast.welfare == pytest.approx(naive.welfare, abs=1e-9)
    np.testing.assert_allclose(fast.payments, naive.payments, atol=1e-9, rtol=0)
    np.testing.assert_allclose(fast.externality, naive.externality, atol=1e-9, rtol=0)
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
    return AuctionOutcome(outcome.assignment, outcome.welfare, payments, externality,
                          float(externality.sum()))


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
    overcharged = AuctionOutcome(honest.assignment, honest.welfare, np.array([7.0]),
                                 np.array([6.0]), 6.0)
    assert check_individual_rationality(values, honest).holds()
    assert check_individual_rationality(values, overcharged).worst == pytest.approx(2.0)
    undercharged = AuctionOutcome(honest.assignment, honest.welfare, np.array([0.5]),
                                  np.array([-0.5]), -0.5)
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
        (np.ones((2, 2)), np.ones((2, 3)), [1, 1], "shape mismatch"),
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


@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
def test_empty_auction(shape):
    outcome = run_vcg_auction(np.zeros(shape), np.zeros(shape), np.ones(shape[1]))
    assert outcome.assignment.shape == (shape[0],)
    assert outcome.payments.shape == (shape[0],)
    assert outcome.welfare == 0.0 and outcome.surplus == 0.0


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
