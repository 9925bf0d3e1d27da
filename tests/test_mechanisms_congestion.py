"""VCG over congestible slots: exact, equal to plain VCG without congestion, truthful with it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.mechanisms import run_vcg_auction
from mercato.mechanisms.congestion import run_congestion_auction


def _market(seed: int, n: int, m: int, slots: int = 3):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 10, (n, m))
    costs = rng.uniform(0, 5, (n, m))
    capacity = rng.integers(1, slots + 1, m)
    return rng, values, costs, capacity


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 7), st.integers(1, 4))
def test_without_penalties_it_is_the_plain_vcg_auction(seed, n, m):
    _, values, costs, capacity = _market(seed, n, m)
    ours = run_congestion_auction(values, costs, np.zeros((n, m, 3)), capacity)
    plain = run_vcg_auction(values, costs, capacity)
    assert ours.welfare == pytest.approx(plain.welfare, abs=1e-9)
    np.testing.assert_allclose(ours.payments, plain.payments, atol=1e-7)
    np.testing.assert_allclose(ours.externality, plain.externality, atol=1e-7)


def _brute_force(weights_fn, n, m, capacity):
    """Best welfare over every assignment of requests to agents and of their slot ranks."""
    best = 0.0
    for choice in itertools.product(range(m + 1), repeat=n):
        for order in itertools.permutations(range(n)):
            best = max(best, _welfare(weights_fn, choice, order, m, capacity))
    return best


def _welfare(weights_fn, choice, order, m, capacity):
    """Welfare when requests take their agents' next free slot in ``order`` (-inf if over capacity)."""
    counts = np.zeros(m, dtype=int)
    total = 0.0
    for i in order:
        a = choice[i]
        if a == m:
            continue
        if counts[a] >= capacity[a]:
            return -np.inf
        total += max(weights_fn(i, a, counts[a]), -1e9)
        counts[a] += 1
    return total


@pytest.mark.parametrize("seed", range(12))
def test_allocation_is_the_welfare_optimum_over_congestible_slots(seed):
    rng, values, costs, capacity = _market(seed, 4, 2)
    weight = rng.uniform(0, 2, 4)
    penalty = weight[:, None, None] * rng.uniform(0, 2, (1, 2, 1)) * np.arange(3)[None, None, :]
    out = run_congestion_auction(values, costs, penalty, capacity)
    best = _brute_force(lambda i, a, k: values[i, a] - costs[i, a] - penalty[i, a, k], 4, 2, capacity)
    assert out.welfare == pytest.approx(best, abs=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_capacities_beyond_the_batch_need_penalties_only_for_its_size(seed):
    """N requests fill at most N slots of an agent: ranks past N are never solved over."""
    rng, values, costs, _ = _market(seed, 3, 2)
    capacity = np.array([8, 5])
    full = np.cumsum(rng.uniform(0, 2, (3, 2, 8)), axis=2)  # non-decreasing in the rank
    short = run_congestion_auction(values, costs, full[:, :, :3], capacity)
    long = run_congestion_auction(values, costs, full, capacity)
    best = _brute_force(lambda i, a, k: values[i, a] - costs[i, a] - full[i, a, k], 3, 2, capacity)
    assert short.welfare == pytest.approx(best, abs=1e-9)
    assert short.assignment.tolist() == long.assignment.tolist()
    np.testing.assert_allclose(short.payments, long.payments, atol=1e-9)


@pytest.mark.parametrize("seed", range(15))
def test_no_buyer_gains_by_misreporting_its_bid(seed):
    # A buyer's value and its congestion penalty both scale with its bid: truthful reporting is
    # dominant, so no misreported bid yields a higher true utility (value - penalty - payment).
    rng = np.random.default_rng(seed)
    n, m = 5, 2
    base = rng.uniform(1, 6, (n, m))
    slope = rng.uniform(0.1, 1.5, (n, m))
    costs = rng.uniform(0, 4, (n, m))
    capacity = np.array([2, 2])
    bids = rng.uniform(0.5, 2.0, n)
    ranks = np.arange(3)[None, None, :]

    def outcome(report):
        return run_congestion_auction(report[:, None] * base, costs,
                                      report[:, None, None] * slope[:, :, None] * ranks, capacity)

    def true_utility(out, i, slot_of):
        a = out.assignment[i]
        if a < 0:
            return 0.0
        return bids[i] * (base[i, a] - slope[i, a] * slot_of(out, i)) - out.payments[i]

    def slot_of(out, i):
        a = out.assignment[i]
        mates = [k for k in np.flatnonzero(out.assignment == a)]
        # within an agent, the optimum fills slots by decreasing penalty slope
        order = sorted(mates, key=lambda k: -(bids_reported[k] * slope[k, a]))
        return order.index(i)

    for i in range(n):
        bids_reported = bids
        honest = true_utility(outcome(bids), i, slot_of)
        assert honest >= -1e-9  # individually rational
        for factor in (0.0, 0.3, 0.7, 1.5, 3.0):
            report = bids.copy()
            report[i] = bids[i] * factor
            bids_reported = report
            assert true_utility(outcome(report), i, slot_of) <= honest + 1e-6


BAD_SHAPE = r"^penalty must have shape \(2, 2, S\), S >= min\(largest capacity, N\); got \({}\)$"
BAD_VALUES = r"^penalty must be finite, >= 0 and non-decreasing in the slot rank$"


@pytest.mark.parametrize(
    ("penalty", "message"),
    [
        (np.zeros((2, 2, 1)), BAD_SHAPE.format("2, 2, 1")),  # fewer ranks than a batch fills
        (np.zeros((3, 2, 2)), BAD_SHAPE.format("3, 2, 2")),  # one row per request
        (np.zeros((2, 3, 2)), BAD_SHAPE.format("2, 3, 2")),  # one column per agent
        (np.zeros((2, 2)), BAD_SHAPE.format("2, 2")),
        (np.array([[[1.0, 0.0]] * 2] * 2), BAD_VALUES),
        (np.full((2, 2, 2), np.nan), BAD_VALUES),
        (np.full((2, 2, 2), -1.0), BAD_VALUES),
        ([[[0.0, None]] * 2] * 2, BAD_VALUES),
    ],
)
def test_bad_penalties_are_refused(penalty, message):
    values, costs, capacity = np.ones((2, 2)), np.zeros((2, 2)), np.array([2, 2])
    with pytest.raises(ValueError, match=message):
        run_congestion_auction(values, costs, penalty, capacity)


@pytest.mark.parametrize(("shape", "capacity"), [((3, 2), [0, 0]), ((3, 0), []), ((0, 2), [1, 1])])
def test_a_market_without_slots_or_requests_routes_nobody(shape, capacity):
    # Every backend full or unhealthy (capacity 0) is a normal gateway state, not an error.
    n, m = shape
    out = run_congestion_auction(np.ones(shape), np.zeros(shape), np.zeros((n, m, 0)), capacity)
    assert out.assignment.tolist() == [-1] * n and out.assignment.dtype == np.int64
    assert out.payments.tolist() == [0.0] * n and out.externality.tolist() == [0.0] * n
    assert out.slot_prices.tolist() == [0.0] * m
    assert out.welfare == 0.0 and out.surplus == 0.0


def test_slot_prices_are_the_least_externality_paid_at_each_agent():
    # Request 0 takes agent 0 (10), request 1 agent 1 (7), request 2 waits. Without request 0,
    # request 1 moves to agent 0 (9) and request 2 takes agent 1 (3): externality 12 - 7 = 5.
    # Without request 1, request 2 takes agent 1: 13 - 10 = 3. Agent 2 has a slot nobody wants.
    values = np.array([[10.0, 0.0, 0.0], [9.0, 7.0, 0.0], [0.0, 3.0, 0.0]])
    costs = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    out = run_congestion_auction(values + costs, costs, np.zeros((3, 3, 1)), [1, 1, 1])
    assert out.assignment.tolist() == [0, 1, -1]
    assert out.externality.tolist() == pytest.approx([5.0, 3.0, 0.0])
    assert out.payments.tolist() == pytest.approx([6.0, 5.0, 0.0])
    assert out.slot_prices.tolist() == pytest.approx([5.0, 3.0, 0.0])
    assert out.surplus == pytest.approx(8.0) and out.welfare == pytest.approx(17.0)


def test_payments_cover_costs_and_the_hub_keeps_a_non_negative_surplus():
    rng, values, costs, capacity = _market(3, 8, 3)
    penalty = rng.uniform(0, 1, (8, 3, 1)) * np.arange(3)[None, None, :]
    out = run_congestion_auction(values, costs, penalty, capacity)
    matched = out.assignment >= 0
    assert (out.payments[matched] >= costs[matched, out.assignment[matched]] - 1e-9).all()
    assert out.surplus >= -1e-9 and (out.payments[~matched] == 0).all()
    assert (np.bincount(out.assignment[matched], minlength=3) <= capacity).all()
