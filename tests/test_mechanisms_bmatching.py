"""Exactness of the b-matching against brute-force enumeration, and its input validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from scipy.optimize import linear_sum_assignment

from mercato.mechanisms import solve_bmatching
from mercato.mechanisms.bmatching import _sufficient_agents, usable_weights
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


def expanded_optimum(welfare: np.ndarray, capacity: np.ndarray) -> float:
    """Oracle for large markets: every agent expanded into all its slots, solved with no pruning."""
    weights = np.maximum(np.nan_to_num(welfare, nan=0.0, neginf=0.0), 0.0)
    columns = np.repeat(np.arange(weights.shape[1]), capacity)
    if weights.shape[0] == 0 or columns.size == 0:
        return 0.0
    rows, cols = linear_sum_assignment(weights[:, columns], maximize=True)
    return float(weights[rows, columns[cols]].sum())


def contested(rng: np.random.Generator, n: int, m: int, forbidden: float = 0.1,
              steepness: float = 10.0) -> np.ndarray:
    """Gateway-like welfare: every request prefers the same cheap agents; some pairs forbidden."""
    welfare = rng.uniform(-2.0, 8.0, (n, 1)) + np.linspace(steepness, 0.0, m) + rng.normal(0.0, 1.0, (n, m))
    mask = rng.random((n, m)) < forbidden
    welfare[mask] = np.where(rng.random(mask.sum()) < 0.5, np.nan, -np.inf)
    return welfare


def assert_feasible(result, welfare: np.ndarray, capacity: np.ndarray) -> None:
    assert result.assignment.dtype.kind == "i" and result.assignment.shape == (welfare.shape[0],)
    matched = result.assignment >= 0
    assert (result.assignment[~matched] == -1).all()
    load = np.bincount(result.assignment[matched], minlength=len(capacity))
    assert (load <= capacity).all()
    chosen = welfare[np.flatnonzero(matched), result.assignment[matched]]
    assert np.isfinite(chosen).all() and (chosen > 0).all()  # never a forbidden or losing pair
    assert result.welfare == pytest.approx(chosen.sum())
    # Optimality at the margin: no request left out could gain at an agent with a slot still free.
    free = load < capacity
    left_out = np.nan_to_num(welfare[~matched][:, free], nan=-np.inf)
    assert not (left_out > 0).any()


@pytest.mark.parametrize(
    ("n", "m", "slots"),
    [
        (200, 100, "equal"),  # the gateway's largest batches, pruning on
        (200, 100, "mixed"),
        (120, 60, "mixed"),
        (48, 30, "equal"),  # the smallest batch that prunes
        (60, 10, "scarce"),  # fewer slots than requests: nothing to prune
        (64, 1, "single"),  # one backend with room for the whole batch
    ],
)
def test_realistic_batches_reach_the_optimum(n, m, slots):
    rng = np.random.default_rng(n * 1000 + m)
    for _ in range(3):
        welfare = contested(rng, n, m)
        capacity = {"equal": np.full(m, 4), "mixed": rng.integers(1, 6, m), "scarce": np.full(m, 3),
                    "single": np.array([100])}[slots]
        result = solve_bmatching(welfare, capacity)
        assert_feasible(result, welfare, capacity)
        assert result.welfare == pytest.approx(expanded_optimum(welfare, capacity), rel=1e-12)


def best_agents_holding(weights: np.ndarray, slots: np.ndarray) -> set[int]:
    """Union over requests of each request's best agents whose slots add up to N (module doc)."""
    n = weights.shape[0]
    needed: set[int] = set()
    for row in weights:
        held = 0
        for agent in np.argsort(-row, kind="stable"):
            needed.add(int(agent))
            held += int(slots[agent])
            if held >= n:
                break
    return needed


@pytest.mark.parametrize("slots", ["equal", "mixed"])
def test_pruning_keeps_exactly_the_agents_some_request_may_need(slots):
    # Exactness rests on this set (module doc): dropping one of its agents could lose the optimum,
    # keeping others only costs time. A contested market is where pruning must pay off.
    rng = np.random.default_rng(17)
    n, m = 200, 100
    for _ in range(3):
        weights = usable_weights(contested(rng, n, m, forbidden=0.0, steepness=30.0))
        capacity = np.full(m, 5) if slots == "equal" else rng.integers(1, 6, m)
        needed = best_agents_holding(weights, capacity)
        assert len(needed) < 0.9 * m
        assert set(_sufficient_agents(weights, capacity).tolist()) == needed


def test_uncontested_or_small_markets_keep_every_agent():
    rng = np.random.default_rng(2)
    weights = rng.uniform(0.1, 1.0, (200, 100))  # no common preference: every agent is someone's best
    capacity = np.full(100, 4)
    assert _sufficient_agents(weights, capacity).tolist() == list(range(100))
    small = usable_weights(contested(rng, 20, 100, forbidden=0.0, steepness=30.0))
    assert _sufficient_agents(small, capacity).tolist() == list(range(100))
