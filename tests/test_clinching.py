"""Polymatroid clinching auction: VCG identity against brute force, DSIC by bid sweeps, IR, weak
budget balance, feasibility, Ausubel's one-type case, ties and bad input."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.mechanisms import run_vcg_auction
from mercato.mechanisms.clinching import ClinchingOutcome, run_clinching_auction
from mercato.mechanisms.polymatroid import capacity_region
from mercato.mechanisms.rank_tables import rank_table

Rank = Callable[[frozenset[int]], float]


def tree_rank(seed: int, k: int) -> Rank:
    """Rank of a random two-level capacity tree whose k leaves are the item types."""
    rng = np.random.default_rng(seed)
    g = nx.DiGraph()
    g.add_node("root", capacity=int(rng.integers(1, 6)))
    groups = np.array_split(np.arange(k), int(rng.integers(1, k + 1)))
    for gi, group in enumerate(groups):
        g.add_edge("root", ("mid", gi))
        g.nodes[("mid", gi)]["capacity"] = int(rng.integers(1, 5))
        for leaf in group:
            g.add_edge(("mid", gi), int(leaf))
            g.nodes[int(leaf)]["capacity"] = int(rng.integers(1, 4))
    region = capacity_region(g)
    return lambda s: region.rank(s)


@st.composite
def auctions(draw: st.DrawFn, max_bidders: int = 6, max_types: int = 3, max_demand: int = 1):
    k = draw(st.integers(1, max_types))
    n = draw(st.integers(1, max_bidders))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 10.0, n).round(3)
    types = rng.integers(0, k, n)
    demand = rng.integers(1, max_demand + 1, n).astype(float)
    return values, types, tree_rank(seed, k), k, demand


def brute_force_vcg(values, types, rank: Rank, k: int, demand) -> tuple[np.ndarray, np.ndarray]:
    """Efficient integer allocation and Clarke payments by enumerating every allocation."""
    table = rank_table(rank, k)
    n = len(values)

    def feasible(units) -> bool:
        per_type = np.bincount(types, weights=units, minlength=k)
        return all(sum(per_type[i] for i in range(k) if s >> i & 1) <= table[s] + 1e-9
                   for s in range(1 << k))

    def best(excluded: int) -> tuple[float, np.ndarray]:
        top, arg = 0.0, np.zeros(n)
        ranges = [[0] if i == excluded else range(int(demand[i]) + 1) for i in range(n)]
        for units in itertools.product(*ranges):
            u = np.array(units, dtype=float)
            w = float(values @ u)
            if w > top + 1e-12 and feasible(u):
                top, arg = w, u
        return top, arg

    total, units = best(-1)
    payments = np.array([best(i)[0] - (total - values[i] * units[i]) if units[i] else 0.0
                         for i in range(n)])
    return units, payments


def assert_feasible(out: ClinchingOutcome, types, rank: Rank, k: int) -> None:
    per_type = np.bincount(types, weights=out.units, minlength=k)
    for s in range(1 << k):
        members = frozenset(i for i in range(k) if s >> i & 1)
        assert per_type[list(members)].sum() <= rank(members) + 1e-9


@settings(max_examples=120)
@given(st.one_of(auctions(), auctions(max_bidders=4, max_types=2, max_demand=3)))
def test_outcome_is_efficient_with_vcg_payments(auction):
    """Unit demands (up to 6 bidders, 3 types) and multi-unit demands (up to 3 units each)."""
    values, types, rank, k, demand = auction
    out = run_clinching_auction(values, types, rank, k, demand)
    units, payments = brute_force_vcg(values, types, rank, k, demand)
    assert float(values @ out.units) == pytest.approx(float(values @ units), abs=1e-9)
    if np.unique(values).size == values.size:  # with tied values, either efficient allocation is right
        np.testing.assert_allclose(out.units, units, atol=1e-9)
        np.testing.assert_allclose(out.payments, payments, atol=1e-9)
    assert_feasible(out, types, rank, k)


def best_misreport_gain(values, types, rank: Rank, k: int, demand, pay_as_bid: bool = False) -> float:
    """Largest utility gain any bidder gets from a swept misreport, everyone else truthful."""
    def run(bids):
        out = run_clinching_auction(bids, types, rank, k, demand)
        if pay_as_bid:  # first-price payments on the same allocation: a manipulable control
            return out.units, out.units * bids
        return out.units, out.payments

    units, pay = run(values)
    truthful = values * units - pay
    grid = np.unique(np.concatenate([np.linspace(0.0, 2.0 * values.max() + 1.0, 41),
                                     values - 1e-6, values + 1e-6]))
    gain = 0.0
    for i in range(values.size):
        for bid in grid:
            report = values.copy()
            report[i] = max(bid, 0.0)
            units, pay = run(report)
            gain = max(gain, values[i] * units[i] - pay[i] - truthful[i])
    return gain


@settings(max_examples=25)
@given(auctions(max_bidders=5, max_types=3, max_demand=2))
def test_truthful_bidding_is_dominant(auction):
    values, types, rank, k, demand = auction
    assert best_misreport_gain(values, types, rank, k, demand) <= 1e-9


def test_the_bid_sweep_catches_a_pay_as_bid_rule():
    values = np.array([5.0, 3.0, 1.0])
    rank = lambda s: min(len(s) * 2.0, 2.0)  # noqa: E731 -- 2 units of one type
    assert best_misreport_gain(values, np.zeros(3, int), rank, 1, 1.0, pay_as_bid=True) > 0.5


@settings(max_examples=80)
@given(auctions(max_bidders=8, max_types=3, max_demand=2))
def test_individually_rational_and_weakly_budget_balanced(auction):
    values, types, rank, k, demand = auction
    out = run_clinching_auction(values, types, rank, k, demand)
    assert (out.payments >= 0).all() and out.revenue >= 0
    assert (out.utilities(values) >= -1e-9).all()
    assert (out.units <= demand + 1e-9).all()
    assert all(c.price <= values[c.bidder] for c in out.clinches)
    np.testing.assert_allclose(np.bincount([c.bidder for c in out.clinches],
                                           weights=[c.units for c in out.clinches],
                                           minlength=values.size), out.units)
    assert_feasible(out, types, rank, k)


def test_one_type_is_a_vickrey_auction_for_m_units():
    values = np.array([4.0, 9.0, 1.0, 7.0, 6.0])
    out = run_clinching_auction(values, np.zeros(5, int), lambda s: 3.0 if s else 0.0, 1)
    np.testing.assert_array_equal(out.units, [0, 1, 0, 1, 1])
    np.testing.assert_allclose(out.payments, [0, 4, 0, 4, 4])   # the 4th-highest bid
    assert out.revenue == 12


def test_surplus_supply_is_free():
    out = run_clinching_auction([2.0, 3.0], [0, 0], lambda s: 5.0 if s else 0.0, 1)
    np.testing.assert_array_equal(out.units, [1, 1])
    assert out.revenue == 0
    assert all(c.price == 0 for c in out.clinches)


def test_coupled_types_share_their_bottleneck():
    # Types 0 and 1 each have 2 units, but together only 2: the two best bids win.
    rank = lambda s: min(2.0 * len(s), 2.0)  # noqa: E731
    out = run_clinching_auction([5.0, 4.0, 3.0, 1.0], [0, 1, 0, 1], rank, 2)
    np.testing.assert_array_equal(out.units, [1, 1, 0, 0])
    np.testing.assert_allclose(out.payments, [3, 3, 0, 0])


def test_independent_types_match_the_vcg_b_matching_auction():
    rng = np.random.default_rng(3)
    caps = np.array([2, 1, 3])
    types = rng.integers(0, 3, 9)
    values = rng.uniform(0, 10, 9)
    out = run_clinching_auction(values, types, lambda s: float(caps[list(s)].sum()), 3)
    matrix = np.full((9, 3), -np.inf)
    matrix[np.arange(9), types] = values
    vcg = run_vcg_auction(matrix, np.zeros((9, 3)), caps)
    np.testing.assert_array_equal(out.units, vcg.matched.astype(float))
    np.testing.assert_allclose(out.payments, vcg.payments, atol=1e-9)


def test_equal_bids_drop_the_higher_index_first():
    out = run_clinching_auction([2.0, 2.0, 1.0], [0, 0, 0], lambda s: 1.0 if s else 0.0, 1)
    np.testing.assert_array_equal(out.units, [1, 0, 0])
    np.testing.assert_allclose(out.payments, [2, 0, 0])


def test_zero_bids_and_no_bidders():
    out = run_clinching_auction([0.0, 0.0], [0, 0], lambda s: 1.0 if s else 0.0, 1)
    assert out.units.sum() == 0 and out.revenue == 0
    empty = run_clinching_auction([], [], lambda s: 1.0 if s else 0.0, 1)
    assert empty.units.size == 0 and empty.clinches == ()


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(values=[1.0, -1.0]), "bidder 1 has -1"),
    (dict(values=[1.0, np.nan]), "values must be finite"),
    (dict(types=[0, 2]), "types must be integers in \\[0, 2\\), bidder 1 has 2"),
    (dict(types=[0, 0.5]), "types must be integers"),
    (dict(types=[0]), "one length"),
    (dict(demand=[1.0, -2.0]), "demand must be finite"),
    (dict(n_types=0), "n_types must be a positive integer"),
    (dict(rank=lambda s: float(len(s) ** 2)), "not a polymatroid rank function: f\\(S \\+ 0\\)"),
    (dict(rank=lambda s: 3.0 - len(s)), "f\\(\\{\\}\\) = 3"),
])
def test_bad_input_is_rejected(kwargs, message):
    args = dict(values=[1.0, 2.0], types=[0, 1], rank=lambda s: float(len(s)), n_types=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        run_clinching_auction(**args)
