"""STAR and the baselines as mechanisms: monotone work, truthful, individually rational."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.mechanisms.myerson import EmpiricalPrior, UniformPrior, VirtualCost
from mercato.mechanisms.workflow import (
    Agent,
    Node,
    ProcurementOutcome,
    Workflow,
    WorkflowMarket,
    check_procurement_dsic,
    check_procurement_ir,
    critical_payment,
    make_solver,
    run_homogeneous,
    run_myopic,
    run_star,
)
from test_star_helpers import random_agents, random_priors, random_workflow

SCALES = (0.0, 0.3, 0.6, 0.8, 0.9, 0.97, 1.03, 1.1, 1.25, 1.5, 2.0, 3.0)


def random_instance(seed: int, n: int = 6):
    rng = np.random.default_rng(seed)
    market = WorkflowMarket(random_workflow(rng, n, density=0.45), random_agents(rng))
    costs, vcs = random_priors(rng, market.n_agents)
    return market, costs, vcs


def star_mechanism(market, vcs, **kw):
    solver = make_solver(market)
    return lambda bids, payee: run_star(market, bids, vcs, solver=solver,
                                        payees=None if payee is None else [payee], **kw)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_lowering_a_winning_bid_never_loses_work(seed):
    market, costs, vcs = random_instance(seed)
    base = run_star(market, costs, vcs, payees=[])
    for i in base.winners:
        previous = base.work[i]
        for scale in (0.9, 0.7, 0.5, 0.2, 0.0):
            bids = costs.copy()
            bids[i] = costs[i] * scale
            work = run_star(market, bids, vcs, payees=[]).work[i]
            assert work >= previous - 1e-9
            previous = work


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_star_is_truthful_and_individually_rational(seed):
    market, costs, vcs = random_instance(seed)
    mechanism = star_mechanism(market, vcs)
    scale = float(costs.max() * market.omega[np.isfinite(market.omega)].sum())
    report = check_procurement_dsic(mechanism, costs, scales=SCALES)
    assert report.tried == len(SCALES) * market.n_agents
    assert report.max_gain <= 1e-9 * scale, report
    assert check_procurement_ir(mechanism(costs, None), costs).holds(1e-9 * scale)


def test_star_is_truthful_with_ironed_priors():
    rng = np.random.default_rng(11)
    market = WorkflowMarket(random_workflow(rng, 6, density=0.5), random_agents(rng))
    vcs = [VirtualCost(EmpiricalPrior(np.concatenate([rng.normal(0.5, 0.05, 20), rng.normal(2.5, 0.05, 20)])))
           for _ in range(market.n_agents)]
    assert not any(vc.regular for vc in vcs)
    costs = rng.uniform(0.3, 2.8, market.n_agents)
    report = check_procurement_dsic(star_mechanism(market, vcs), costs, scales=SCALES)
    assert report.max_gain <= 1e-7, report


def test_single_node_payment_is_the_myerson_critical_value():
    # One node, two agents with uniform priors: i wins iff 2 b_i - low_i < 2 b_j - low_j, so its
    # critical bid is (2 b_j - low_j + low_i) / 2, capped at its reserve.
    node = Workflow([Node("v", 1, 1000, 500)], [])
    market = WorkflowMarket(node, [Agent("x", 1, 0.25), Agent("y", 1, 0.25)])
    vcs = [VirtualCost(UniformPrior(0.2, 2.0)), VirtualCost(UniformPrior(1.0, 4.0))]
    omega = 500 + 0.25 * 1000
    for bids, critical in (([0.5, 1.5], (2 * 1.5 - 1.0 + 0.2) / 2), ([0.5, 3.5], 2.0)):
        outcome = run_star(market, np.array(bids), vcs)
        assert outcome.assignment.tolist() == [0]
        assert outcome.payments[0] == pytest.approx(critical * omega, rel=1e-9)
        assert outcome.payments[1] == 0.0


def test_bisection_matches_crossing_within_its_tolerance():
    market, costs, vcs = random_instance(7, n=7)
    solver = make_solver(market)
    winners = run_star(market, costs, vcs, payees=[]).winners
    assert winners.size
    for i in winners:
        exact, points = critical_payment(market, solver, costs, vcs, int(i), "crossing")
        approx, _ = critical_payment(market, solver, costs, vcs, int(i), "bisection")
        work = run_star(market, costs, vcs, payees=[]).work[i]
        assert approx == pytest.approx(exact, abs=1e-7 * vcs[i].reserve * work)
        assert all(p.bid >= costs[i] for p in points)


def test_dsic_check_catches_pay_as_bid():
    market, costs, vcs = random_instance(3)
    solver = make_solver(market)

    def pay_as_bid(bids, payee):
        star = run_star(market, bids, vcs, solver=solver, payees=[])
        return ProcurementOutcome("pay-as-bid", star.assignment, star.work, bids * star.work, "x")

    assert not check_procurement_dsic(pay_as_bid, costs, scales=SCALES).holds(1e-6)


@pytest.mark.parametrize("baseline", [run_myopic, run_homogeneous])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_baselines_are_truthful_and_individually_rational(baseline, seed):
    market, costs, vcs = random_instance(seed)
    reserves = np.array([vc.reserve for vc in vcs])
    mechanism = lambda bids, payee: baseline(market, bids, reserves)  # noqa: E731
    assert check_procurement_dsic(mechanism, costs, scales=SCALES).holds(1e-9)
    assert check_procurement_ir(mechanism(costs, None), costs).holds(1e-9)


def test_homogeneous_gives_everything_to_one_top_tier_agent():
    market, costs, vcs = random_instance(4)
    outcome = run_homogeneous(market, costs, [vc.reserve for vc in vcs])
    assert len(set(outcome.assignment.tolist())) == 1
    assert market.agents[outcome.assignment[0]].tier >= market.workflow.max_difficulty


def test_bad_bids_are_rejected():
    market, costs, vcs = random_instance(0)
    with pytest.raises(ValueError, match="one bid per agent"):
        run_star(market, costs[:-1], vcs)
    bad = costs.copy()
    bad[2] = -1.0
    with pytest.raises(ValueError, match="agent 'a2'"):
        run_star(market, bad, vcs)
