"""Serve-all VCG: every request served, welfare-optimal among such allocations, Clarke payments."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.mechanisms import run_vcg_auction
from mercato.mechanisms.congestion import run_congestion_auction
from mercato.mechanisms.serve_all import serve_all_shift


def _complete_best(welfare, capacity, skip=None):
    """Best total welfare over assignments serving every row but ``skip`` (brute force)."""
    rows = [i for i in range(welfare.shape[0]) if i != skip]
    best = -np.inf
    for choice in itertools.product(range(welfare.shape[1]), repeat=len(rows)):
        if (np.bincount(choice, minlength=len(capacity)) > capacity).any():
            continue
        total = sum(welfare[i, a] for i, a in zip(rows, choice, strict=True))
        best = max(best, total)
    return best


def _serve_all(values, costs, capacity):
    shift = serve_all_shift(values - costs, capacity)
    assert shift is not None
    return run_vcg_auction(values + shift[:, None], costs, capacity)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 5), st.integers(1, 3))
def test_every_request_is_served_at_the_best_complete_allocation(seed, n, m):
    rng = np.random.default_rng(seed)
    capacity = rng.integers(1, 4, m)
    if capacity.sum() < n:
        capacity[0] += n - capacity.sum()
    values = rng.uniform(-20, 10, (n, m))  # most pairs lose money: plain VCG would drop them
    costs = rng.uniform(0, 5, (n, m))
    welfare = values - costs
    outcome = _serve_all(values, costs, capacity)
    assert (outcome.assignment >= 0).all()
    assert (np.bincount(outcome.assignment, minlength=m) <= capacity).all()
    got = welfare[np.arange(n), outcome.assignment].sum()
    assert got == pytest.approx(_complete_best(welfare, capacity), abs=1e-7)
    # Clarke pivot inside the set: what the others lose because i is there
    for i in range(n):
        others_now = got - welfare[i, outcome.assignment[i]]
        expected = _complete_best(welfare, capacity, skip=i) - others_now
        assert outcome.externality[i] == pytest.approx(expected, abs=1e-6)
        assert outcome.payments[i] == pytest.approx(costs[i, outcome.assignment[i]] + expected, abs=1e-6)


def test_plain_vcg_drops_the_losing_requests_that_serve_all_keeps():
    values = np.array([[1.0, 0.5], [2.0, 1.0]])
    costs = np.array([[3.0, 3.0], [1.0, 1.5]])
    capacity = np.array([1, 1])
    assert run_vcg_auction(values, costs, capacity).assignment.tolist() == [-1, 0]
    assert _serve_all(values, costs, capacity).assignment.tolist() == [1, 0]


def test_a_misreported_bid_never_gains_inside_the_serve_all_set():
    rng = np.random.default_rng(3)
    for _ in range(40):
        n, m = 4, 3
        base = rng.uniform(-5, 15, (n, m))  # a buyer's value is bid * base
        costs = rng.uniform(0, 8, (n, m))
        capacity = np.array([2, 1, 2])
        i = int(rng.integers(n))
        truth = _serve_all(base, costs, capacity)
        a = truth.assignment[i]
        honest = base[i, a] - truth.payments[i]
        for bid in (0.0, 0.3, 0.7, 1.5, 3.0):
            lie = base.copy()
            lie[i] *= bid
            out = _serve_all(lie, costs, capacity)
            b = out.assignment[i]
            assert base[i, b] - out.payments[i] <= honest + 1e-7


def test_congestion_penalties_keep_every_request_served():
    rng = np.random.default_rng(0)
    n, m = 6, 2
    values = rng.uniform(-10, 0, (n, m))
    costs = rng.uniform(0, 5, (n, m))
    capacity = np.array([4, 4])
    penalty = np.broadcast_to(np.arange(4.0) * 3.0, (n, m, 4)).copy()
    shift = serve_all_shift(values - costs, capacity, spread=float(penalty.max()))
    assert shift is not None
    outcome = run_congestion_auction(values + shift[:, None], costs, penalty, capacity)
    assert (outcome.assignment >= 0).all()
    assert np.bincount(outcome.assignment, minlength=m).tolist() == [3, 3]  # spread by congestion


def test_it_declines_when_not_everyone_can_be_served():
    welfare = np.zeros((3, 2))
    assert serve_all_shift(welfare, np.array([1, 1])) is None
    forbidden = np.array([[1.0, np.nan], [np.nan, np.nan]])
    assert serve_all_shift(forbidden, np.array([2, 2])) is None
    assert serve_all_shift(np.zeros((0, 2)), np.array([1, 1])) is None
