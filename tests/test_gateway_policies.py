"""Routing policies on hand-built batch markets: who goes where, and what no policy may ever do.

Every policy must route only to allowed backends, fill free slots before queueing, and keep the
fields the router reads well formed; the auction's fallback must never move a winner or hand a
winner's slot to a loser.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from mercato.gateway.core.market import BatchContext
from mercato.gateway.core.policies import (
    POLICY_NAMES,
    Allocation,
    AuctionPolicy,
    CacheAwarePolicy,
    LeastLoadedPolicy,
    MatrixFactorisationPolicy,
    RandomPolicy,
    RoundRobinPolicy,
    assign_sequentially,
    greedy_fill,
    make_policy,
)
from mercato.gateway.core.predictors import Predictions
from mercato.gateway.core.router import Router
from mercato.gateway.core.types import BackendSpec, BuyerReport, RouteRequest
from mercato.mechanisms import run_vcg_auction


def spec(name: str, capacity: int = 4, price: float = 0.05) -> BackendSpec:
    return BackendSpec(name=name, model="m", capacity=capacity, price_input=price,
                       price_cached_input=price / 2, price_output=price * 4)


def request(i: int, prompt: str = "what is the capital of france") -> RouteRequest:
    return RouteRequest(request_id=f"r{i}", prompt=prompt, prompt_tokens=40, max_tokens=16,
                        session_id=f"s{i}", turn=1, domain="coqa", source="test", buyer="b",
                        report=BuyerReport(), arrival=0.0)


def market(values, costs=None, *, allowed=None, capacity=None, inflight=None, affinity=None,
           penalty=None, seed: int = 0) -> BatchContext:
    """A batch market from per-pair values (N, M); everything else defaults to a calm fleet."""
    values = np.asarray(values, dtype=np.float64).reshape(-1, np.shape(values)[-1])
    n, m = values.shape
    zeros = np.zeros((n, m))
    capacity = np.full(m, 4) if capacity is None else np.asarray(capacity)
    return BatchContext(
        requests=[request(i) for i in range(n)],
        backends=[spec(f"b{j}", int(capacity[j])) for j in range(m)],
        allowed=np.ones((n, m), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool),
        capacity=capacity.astype(np.int64),
        inflight=np.zeros(m) if inflight is None else np.asarray(inflight, dtype=np.float64),
        affinity=zeros if affinity is None else np.asarray(affinity, dtype=np.float64),
        predictions=Predictions(zeros, zeros, zeros),
        values=values,
        costs=zeros if costs is None else np.asarray(costs, dtype=np.float64),
        rng=np.random.default_rng(seed),
        slot_penalty=penalty,
    )


def assert_well_formed(alloc: Allocation, ctx: BatchContext) -> None:
    """What the router reads: one integer backend per request, allowed, and the VCG fields."""
    n = len(ctx.requests)
    assert alloc.assignment.shape == (n,) and alloc.assignment.dtype.kind == "i"
    assert alloc.paid.shape == (n,) and alloc.paid.dtype == bool
    assert alloc.externality.shape == (n,) and alloc.externality.dtype == np.float64
    for i, a in enumerate(alloc.assignment):
        if ctx.allowed[i].any():
            assert 0 <= a < len(ctx.backends) and ctx.allowed[i, a], (i, a)
        else:
            assert a == -1
    assert (alloc.externality[~alloc.paid] == 0.0).all()


def slots_used(alloc: Allocation, m: int) -> list[int]:
    return np.bincount(alloc.assignment[alloc.assignment >= 0], minlength=m).tolist()


# ---- the auction and its fallback ---------------------------------------------------------


def test_fallback_leaves_winners_where_they_won_and_fills_only_the_slots_left():
    # Backend 0 has one slot, backend 1 two. Requests 0 and 1 win; request 2 loses money
    # everywhere (IEMAS as published leaves it out of the auction) and would rather use backend 0,
    # but request 0 holds that slot: it must take backend 1's free slot, unpaid.
    values = [[10.0, 3.0], [2.0, 8.0], [-1.0, -2.0]]
    ctx = market(values, capacity=[1, 2])
    alloc = AuctionPolicy(serve_all=False).allocate(ctx)
    assert_well_formed(alloc, ctx)
    assert alloc.assignment.tolist() == [0, 1, 1]
    assert alloc.paid.tolist() == [True, True, False]
    assert slots_used(alloc, 2) == [1, 2]


def test_losers_queue_at_their_best_allowed_backend_once_every_slot_is_taken():
    values = [[10.0, 9.0, 20.0], [9.0, 10.0, 20.0], [3.0, 4.0, 30.0]]
    allowed = [[True, True, False], [True, True, False], [True, True, False]]  # backend 2: wrong model
    ctx = market(values, allowed=allowed, capacity=[1, 1, 5])
    alloc = AuctionPolicy(serve_all=False).allocate(ctx)
    assert_well_formed(alloc, ctx)
    assert alloc.assignment.tolist() == [0, 1, 1]  # the loser queues at its better allowed backend
    assert alloc.paid.tolist() == [True, True, False]


def test_fallback_ranks_leftover_slots_by_predicted_welfare():
    # The loser's value is higher at backend 1 but so is its cost: welfare (value - cost) decides.
    values = [[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    costs = [[0.0, 0.0, 0.0], [0.0, 5.0, 1.0]]
    values[1] = [-1.0, 4.0, 0.5]  # welfare -1, -1, -0.5: backend 2 is the least bad
    ctx = market(values, costs, capacity=[1, 1, 1])
    alloc = AuctionPolicy(serve_all=False).allocate(ctx)
    assert alloc.assignment.tolist() == [0, 2]
    assert alloc.paid.tolist() == [True, False]


def test_the_auction_never_routes_to_a_disallowed_backend():
    rng = np.random.default_rng(3)
    for serve_all in (True, False):
        policy = AuctionPolicy(serve_all=serve_all)
        for _ in range(30):
            n, m = rng.integers(1, 8), rng.integers(1, 5)
            values = rng.uniform(-5, 10, (n, m))
            allowed = rng.random((n, m)) < 0.6
            ctx = market(values, rng.uniform(0, 3, (n, m)), allowed=allowed, capacity=rng.integers(0, 3, m))
            alloc = policy.allocate(ctx)
            assert_well_formed(alloc, ctx)
            free = ctx.capacity.copy()
            for i in np.flatnonzero(alloc.assignment >= 0):  # paid ones hold real slots
                if alloc.paid[i]:
                    free[alloc.assignment[i]] -= 1
            assert (free >= 0).all()


def test_serve_all_keeps_every_request_in_the_auction_under_heavy_congestion():
    # One backend, three slots whose congestion penalty (up to 100 credits) dwarfs the welfare
    # spread: the shift that keeps everyone in the auction must include the penalty spread.
    values = [[10.0], [9.0], [8.0]]
    penalty = np.tile(np.array([0.0, 50.0, 100.0]), (3, 1, 1))
    ctx = market(values, capacity=[3], penalty=penalty)
    alloc = AuctionPolicy().allocate(ctx)
    assert alloc.assignment.tolist() == [0, 0, 0]
    assert alloc.paid.all()


def test_the_auction_keeps_a_running_average_of_clearing_prices():
    policy = AuctionPolicy(serve_all=False)
    assert policy.warm_prices is None
    first = market([[10.0, 4.0], [9.0, 1.0], [6.0, 5.0]], capacity=[1, 1])
    second = market([[3.0, 8.0], [2.0, 7.0], [1.0, 6.0]], capacity=[1, 2])
    p1 = run_vcg_auction(first.values, first.costs, first.capacity).slot_prices
    p2 = run_vcg_auction(second.values, second.costs, second.capacity).slot_prices
    assert p1.any() and p2.any() and not np.allclose(p1, p2)
    policy.allocate(first)
    np.testing.assert_allclose(policy.warm_prices, p1)
    warm = policy.allocate(second)
    np.testing.assert_allclose(policy.warm_prices, 0.7 * p1 + 0.3 * p2)
    cold = AuctionPolicy(serve_all=False).allocate(second)  # prices only speed the solve up
    assert warm.assignment.tolist() == cold.assignment.tolist()
    np.testing.assert_allclose(warm.externality, cold.externality)
    policy.reset()
    assert policy.warm_prices is None


def test_the_auction_survives_a_change_in_the_fleet():
    policy = AuctionPolicy(serve_all=False)
    for m in (2, 3, 3, 1):
        ctx = market(np.arange(4 * m, dtype=float).reshape(4, m) + 1.0, capacity=np.full(m, 2))
        alloc = policy.allocate(ctx)
        assert_well_formed(alloc, ctx)
        assert policy.warm_prices.shape == (m,)


def test_a_batch_routed_while_every_backend_is_down_gets_no_backend():
    # Regression: with congestion priced (batches of 2+) and no slot anywhere, the congestion
    # auction used to raise IndexError, failing the whole batch.
    router = Router([spec("a"), spec("b")], "auction")
    for name in ("a", "b"):
        router.set_health(name, False)
    decisions = router.route([request(i) for i in range(3)], 0.0)
    assert [d.backends for d in decisions] == [[], [], []]
    assert not any(d.paid for d in decisions)


# ---- every policy ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_policy_handles_empty_and_full_markets(name):
    policy = make_policy(name, 3, seed=1)
    empty = market(np.zeros((0, 3)))
    alloc = policy.allocate(empty)
    assert_well_formed(alloc, empty)
    # Every slot taken: requests still get an allowed backend (they queue); one with none waits.
    full = market(np.ones((3, 3)), allowed=[[True, False, True], [False, False, False], [False, True, False]],
                  capacity=[0, 0, 0], inflight=[4, 4, 4])
    alloc = policy.allocate(full)
    assert_well_formed(alloc, full)
    assert alloc.assignment[1] == -1 and alloc.assignment[2] == 1


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_policy_fills_free_slots_before_queueing(name):
    policy = make_policy(name, 3, seed=2)
    ctx = market(np.ones((6, 3)), allowed=np.tile([True, True, False], (6, 1)), capacity=[3, 3, 9])
    alloc = policy.allocate(ctx)
    assert_well_formed(alloc, ctx)
    assert slots_used(alloc, 3) == [3, 3, 0]


def test_unpriced_allocations_charge_nothing():
    alloc = Allocation.unpriced(np.array([2, -1, 0]))
    assert alloc.paid.dtype == bool and alloc.paid.tolist() == [False] * 3
    assert alloc.externality.dtype == np.float64 and alloc.externality.tolist() == [0.0] * 3


def test_make_policy_names_the_known_policies_and_seeds_the_learned_ones():
    message = f"unknown policy 'greedy'; choose one of {', '.join(POLICY_NAMES)}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make_policy("greedy", 2)
    assert [make_policy(name, 2).name for name in POLICY_NAMES] == list(POLICY_NAMES)
    seeded = make_policy("mf", 2, seed=5)
    assert isinstance(seeded, MatrixFactorisationPolicy)
    np.testing.assert_array_equal(seeded.projection, MatrixFactorisationPolicy(2, seed=5).projection)
    assert not np.array_equal(seeded.projection, make_policy("mf", 2, seed=6).projection)


# ---- the shared sequential fills ------------------------------------------------------------


def test_assign_sequentially_walks_the_given_rows_counting_load_and_slots():
    ctx = market(np.zeros((4, 3)), allowed=[[True, True, True], [True, True, True], [False, False, False],
                                            [True, False, True]],
                 capacity=[2, 3, 1], inflight=[1, 0, 5])
    seen = []

    def pick(i, ok, load, left):
        seen.append((i, load.tolist(), left.tolist()))
        return int(np.argmin(np.where(ok, load, np.inf)))

    out = assign_sequentially(ctx, pick, rows=[3, 2, 0], taken=np.array([0, 2, 0]))
    assert out.dtype == np.int64 and out.tolist() == [0, -1, -1, 0]  # row 2 has no backend: never asked
    assert seen == [
        (3, [1.0, 2.0, 5.0], [2, 1, 1]),  # load = in flight + taken, slots = capacity - taken
        (0, [2.0, 2.0, 5.0], [1, 1, 1]),  # row 3's choice counts once, in load and in slots
    ]


def test_greedy_fill_takes_the_best_backend_with_a_slot_then_queues_at_the_best_allowed():
    score = np.array([[5.0, 9.0, 1.0], [5.0, 9.0, 1.0], [5.0, 9.0, 1.0], [5.0, 9.0, 8.0]])
    allowed = [[True, True, True]] * 3 + [[True, True, False]]
    ctx = market(np.zeros((4, 3)), allowed=allowed, capacity=[1, 1, 1])
    assert greedy_fill(ctx, score).tolist() == [1, 0, 2, 1]
    taken = np.array([0, 1, 0])  # backend 1's slot already went to a winner
    assert greedy_fill(ctx, score, rows=[0, 3], taken=taken).tolist() == [0, -1, -1, 1]


# ---- load balancers ------------------------------------------------------------------------


def test_round_robin_cycles_across_batches():
    policy = RoundRobinPolicy()
    first = policy.allocate(market(np.zeros((4, 3)))).assignment.tolist()
    second = policy.allocate(market(np.zeros((3, 3)))).assignment.tolist()
    assert first + second == [0, 1, 2, 0, 1, 2, 0]


def test_round_robin_skips_disallowed_and_full_backends():
    policy = RoundRobinPolicy()
    allowed = np.tile([True, False, True, True], (6, 1))
    ctx = market(np.zeros((6, 4)), allowed=allowed, capacity=[5, 5, 1, 5])
    # 0; 1 not allowed -> 2 (its one slot); 3; 0; 1 -> 2 full -> 3; 0
    assert policy.allocate(ctx).assignment.tolist() == [0, 2, 3, 0, 3, 0]
    full = market(np.zeros((2, 3)), allowed=[[False, True, True]] * 2, capacity=[0, 0, 0])
    assert RoundRobinPolicy().allocate(full).assignment.tolist() == [1, 2]  # queues, still in turn


def test_least_loaded_compares_utilisation_not_queue_length():
    # b0: 2 of 10 in flight (20%); b1: 1 of 2 (50%); b2: empty but capacity 0 counts as 1.
    ctx = market(np.zeros((5, 3)), allowed=np.tile([True, True, False], (5, 1)), capacity=[10, 2, 0],
                 inflight=[2, 1, 0])
    alloc = LeastLoadedPolicy().allocate(ctx)
    assert alloc.assignment.tolist() == [0, 0, 0, 0, 1]  # 20, 30, 40% < 50%; 50% = 50%: the first; 60%
    lone = market(np.zeros((2, 2)), capacity=[1, 10], inflight=[0, 6])
    assert LeastLoadedPolicy().allocate(lone).assignment.tolist() == [0, 1]  # 1/1 = 100% > 60%


def test_random_routes_only_to_allowed_backends_with_slots():
    ctx = market(np.zeros((24, 4)), allowed=np.tile([True, False, True, True], (24, 1)), capacity=[10] * 4)
    alloc = RandomPolicy().allocate(ctx)
    assert_well_formed(alloc, ctx)
    used = slots_used(alloc, 4)
    assert used[1] == 0 and max(used) <= 10 and min(used[0], used[2], used[3]) >= 1


# ---- SGLang's cache-aware rule -------------------------------------------------------------


def cache_market(loads, affinity):
    n = len(affinity)
    return market(np.zeros((n, len(loads))), inflight=loads, affinity=affinity, capacity=[50] * len(loads))


@pytest.mark.parametrize(
    ("loads", "expected"),
    [
        ([10, 13], 1),  # gap 3 > 2 but 13 < 1.5 x 10: balanced, follow the cache
        ([1, 2], 1),  # gap 1: balanced
        ([0, 2], 1),  # gap exactly 2 is not past the absolute threshold
        ([6, 9], 1),  # ratio exactly 1.5 is not past the relative threshold
        ([6, 10], 0),  # past both: the least loaded backend
        ([10, 6], 1),  # past both, and the cached backend is the least loaded
    ],
)
def test_cache_aware_follows_the_cache_unless_load_is_imbalanced_past_both_thresholds(loads, expected):
    policy = CacheAwarePolicy(balance_abs_threshold=2.0, balance_rel_threshold=1.5)
    assert policy.allocate(cache_market(loads, [[0.0, 0.8]])).assignment.tolist() == [expected]


@pytest.mark.parametrize(("affinity", "expected"), [(0.9, 2), (0.51, 2), (0.5, 0), (0.2, 0)])
def test_cache_aware_needs_a_match_above_the_threshold(affinity, expected):
    ctx = cache_market([1, 3, 2], [[0.0, 0.1, affinity]])
    assert CacheAwarePolicy().allocate(ctx).assignment.tolist() == [expected]


def test_cache_aware_counts_its_own_batch_and_ignores_disallowed_backends():
    policy = CacheAwarePolicy(balance_abs_threshold=2.0, balance_rel_threshold=1.5)
    ctx = cache_market([0, 0], [[0.1, 0.9]] * 4)
    assert policy.allocate(ctx).assignment.tolist() == [1, 1, 1, 0]  # the 4th sees loads 0 vs 3
    # The best match and the least loaded backend are both disallowed: route among the rest.
    ctx = market(np.zeros((2, 3)), allowed=[[False, True, True], [True, False, True]],
                 inflight=[0, 5, 7], affinity=[[0.99, 0.7, 0.6], [0.1, 0.99, 0.2]], capacity=[9, 9, 9])
    assert CacheAwarePolicy().allocate(ctx).assignment.tolist() == [1, 0]
