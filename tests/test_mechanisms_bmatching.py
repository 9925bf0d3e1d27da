"""Exactness of the b-matching against brute-force enumeration, and its input validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings

from mercato.mechanisms import solve_bmatching
from mercato.mechanisms.ssp import ssp_assignment
from strategies import markets


def brute_force(welfare: np.ndarray, capacity: np.ndarray) -> float:
    """Best total welfare over every assignment of requests to agents or to nobody."""
    n, m = welfare.shape
    best = 0.0
    for choice in itertools.product(range(-1, m), repeat=n):
        load = np.bincount([c for c in choice if c >= 0], minlength=m)
        if (load > capacity).any():
            continue
        total = 0.0
        for j, i in enumerate(choice):
            if i >= 0:
                w = welfare[j, i]
                if not np.isfinite(w) or w <= 0:
                    break
                total += w
        else:
            best = max(best, total)
    return best


@settings(max_examples=150)
@given(markets())
def test_matches_brute_force(market):
    values, costs, capacity = market
    welfare = values - costs
    result = solve_bmatching(welfare, capacity)
    assert result.welfare == pytest.approx(brute_force(welfare, capacity), abs=1e-9)
    load = np.bincount(result.assignment[result.assignment >= 0], minlength=len(capacity))
    assert (load <= capacity).all()
    for j, i in enumerate(result.assignment):
        if i >= 0:
            assert np.isfinite(welfare[j, i]) and welfare[j, i] > 0


@settings(max_examples=60)
@given(markets(sparse=0.75))
def test_pure_python_paper_design_agrees(market):
    values, costs, capacity = market
    welfare = values - costs
    weights = np.maximum(np.nan_to_num(welfare, nan=0.0, neginf=0.0), 0.0)
    ssp = ssp_assignment(weights, capacity)
    total = sum(weights[j, a] for j, a in enumerate(ssp) if a >= 0)
    assert total == pytest.approx(solve_bmatching(welfare, capacity).welfare, abs=1e-9)


def test_never_trades_welfare_for_more_matches():
    # One big match (10) beats two small ones (1 + 8): a max-cardinality-first flow takes the pair.
    result = solve_bmatching(np.array([[10.0, 1.0], [8.0, np.nan]]), [1, 1])
    assert result.welfare == pytest.approx(10.0)
    assert result.assignment.tolist() == [0, -1]


def test_nonpositive_pairs_never_used():
    result = solve_bmatching(np.array([[0.0, -1.0], [-np.inf, np.nan]]), [5, 5])
    assert result.assignment.tolist() == [-1, -1]
    assert result.welfare == 0.0


@pytest.mark.parametrize("shape", [(0, 3), (4, 0), (0, 0)])
def test_empty_market(shape):
    result = solve_bmatching(np.zeros(shape), np.ones(shape[1]))
    assert result.assignment.shape == (shape[0],)
    assert (result.assignment == -1).all()
    assert result.welfare == 0.0


@pytest.mark.parametrize(
    ("welfare", "capacity", "message"),
    [
        (np.ones((2, 3)), [1, 1], "capacity has 2 entries but there are 3 agents"),
        (np.ones((2, 2)), [1, -1], "capacity must be non-negative"),
        (np.ones((2, 2)), [1, np.nan], "capacity must be finite"),
        (np.ones((2, 2)), [1, 1.5], "whole numbers"),
        (np.ones(3), [1, 1, 1], "must be a 2-D"),
        ([["a", "b"]], [1, 1], "welfare must be numeric"),
        (np.ones((2, 2)), ["x", 1], "capacity must be numeric"),
        (np.array([[1.0, np.inf]]), [1, 1], r"\+inf at \(0, 1\)"),
    ],
)
def test_bad_input_names_the_problem(welfare, capacity, message):
    with pytest.raises(ValueError, match=message):
        solve_bmatching(welfare, capacity)
