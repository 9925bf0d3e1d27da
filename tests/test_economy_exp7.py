"""Experiment 7: VCG over slices and clinching as simulator rules, their per-round truthfulness,
the incentive / best-response analysis, determinism, bad configuration and the written files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from mercato.cli import app
from mercato.economy import EconomyConfig, simulate
from mercato.economy.book import PoolSpec, RoundBook
from mercato.economy.config import Parameters
from mercato.economy.exp7_mechanisms import ClinchingSlices, SliceAuction, VCGSlices
from mercato.experiments.economy_exp7 import (
    MECHANISMS7,
    best_response,
    conditions,
    incentives,
    run_exp7,
    vcg_clinching_gap,
)

SMALL = dict(topology="entangled", arrival_rate=1.5, n_agents=20, rounds=30, architecture="hybrid",
             strategic_share=0.5, inflation=2.0)


def book(bids, slice_capacity=3, rng_seed=0) -> RoundBook:
    n = len(bids)
    pool = PoolSpec(name="all", capacity=np.array([200.0, 300.0, 500.0]),
                    mean_bundle=np.array([5.0, 4.0, 3.0]), slice_capacity=slice_capacity)
    return RoundBook(round=0, bids=np.asarray(bids, dtype=float), weights=np.asarray(bids, dtype=float),
                     classes=np.zeros(n, dtype=np.int64), success_a=np.array([2.0]),
                     success_b=np.array([-2.0]), predicted_rho=0.0,
                     bundles=np.tile(np.array([5, 4, 3]), (n, 1)), templates=np.zeros(n, dtype=np.int64),
                     deadlines=np.full(n, 150.0), agents=np.arange(n), pool=pool,
                     rng=np.random.default_rng(rng_seed))


def utility(mechanism: type[SliceAuction], bids, bidder: int, true_value: float) -> float:
    b = book(bids)
    alloc = mechanism(b.pool, Parameters()).allocate(b)
    return float(alloc.admitted[bidder] * true_value - alloc.payments[bidder])


@pytest.mark.parametrize("mechanism", [VCGSlices, ClinchingSlices])
def test_a_round_is_truthful_for_every_bidder(mechanism):
    bids = np.array([0.9, 0.4, 1.3, 0.7, 1.1, 0.2, 0.8])
    sweep = np.linspace(0.0, 2.0, 81)
    for i, value in enumerate(bids):
        honest = utility(mechanism, bids, i, value)
        for report in sweep:
            lied = bids.copy()
            lied[i] = report
            assert utility(mechanism, lied, i, value) <= honest + 1e-12


@pytest.mark.parametrize("mechanism", [VCGSlices, ClinchingSlices])
def test_winners_pay_the_supply_plus_first_bid(mechanism):
    b = book([0.9, 0.4, 1.3, 0.7, 1.1], slice_capacity=3)
    alloc = mechanism(b.pool, Parameters()).allocate(b)
    np.testing.assert_array_equal(alloc.admitted, [True, False, True, False, True])
    np.testing.assert_allclose(alloc.payments, [0.7, 0, 0.7, 0, 0.7])
    np.testing.assert_allclose(alloc.prices, [0.7])


def test_supply_comes_from_the_previous_round_not_the_current_bids():
    first = book(np.linspace(0.1, 2.0, 40), slice_capacity=30)
    auction = VCGSlices(first.pool, Parameters())
    assert auction.allocate(first).admitted.sum() == 30          # no history: the whole slice
    sold = set()
    for seed in range(5):
        bids = np.random.default_rng(seed).uniform(0.0, 5.0, 40)
        probe = VCGSlices(first.pool, Parameters())
        probe.previous = first
        sold.add(int(probe.allocate(book(bids, slice_capacity=30)).admitted.sum()))
    assert len(sold) == 1 and 0 < sold.pop() < 30


def test_vcg_and_clinching_agree_run_by_run_in_the_simulator():
    a = simulate(EconomyConfig(mechanism="vcg", **SMALL)).metrics
    b = simulate(EconomyConfig(mechanism="clinching", **SMALL)).metrics
    assert a.keys() == b.keys()
    for k in a:
        assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k], abs=1e-12), k
    assert a["revenue"] > 0


def test_same_seed_same_results_and_another_seed_differs():
    one = simulate(EconomyConfig(mechanism="clinching", **SMALL)).metrics
    again = simulate(EconomyConfig(mechanism="clinching", **SMALL)).metrics
    other = simulate(EconomyConfig(mechanism="clinching", seed=1, **SMALL)).metrics
    assert json.dumps(one, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert one["welfare"] != other["welfare"]


@pytest.mark.parametrize("name", ["vcg", "clinching"])
def test_truthful_auctions_refuse_a_naive_architecture(name):
    with pytest.raises(ValueError, match="hybrid architecture"):
        simulate(EconomyConfig(**{**SMALL, "mechanism": name, "architecture": "naive"}))


def test_bad_grids_are_rejected():
    with pytest.raises(ValueError, match="includes 0"):
        conditions(shares=(0.5, 1.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        conditions(shares=(0.0, 1.5))


def fake_runs() -> list[dict]:
    """Two seeds; under value_greedy x2 pays, under vcg it costs; welfare tells which cell was used."""
    rows = []
    for seed in (0, 1):
        for mech, gain in (("value_greedy", 0.1), ("vcg", -0.1)):
            rows.append(dict(topology="tree", mechanism=mech, share=0.0, inflation=1.0, seed=seed,
                             welfare=10.0, utility_truthful=0.5, utility_strategic=math.nan))
            rows.append(dict(topology="tree", mechanism=mech, share=0.5, inflation=1.0, seed=seed,
                             welfare=10.0, utility_truthful=0.5, utility_strategic=0.5))
            for x in (1.5, 2.0):
                rows.append(dict(topology="tree", mechanism=mech, share=0.5, inflation=x, seed=seed,
                                 welfare=10.0 - x, utility_truthful=0.4,
                                 utility_strategic=0.5 + gain * x + 0.01 * seed))
    return rows


def test_best_response_picks_the_factor_that_pays_and_its_welfare():
    runs = fake_runs()
    runs += [dict(r, mechanism=m) for m in ("market", "clinching") for r in fake_runs()
             if r["mechanism"] == "vcg"]
    rows = {(r["mechanism"], r["share"]): r for r in best_response(runs, ["tree"], [0.0, 0.5], seed=0)}
    assert rows["value_greedy", 0.5]["chosen_inflation"] == 2.0
    assert rows["value_greedy", 0.5]["welfare"] == pytest.approx(8.0)
    assert rows["value_greedy", 0.5]["welfare_change"] == pytest.approx(-0.2)
    assert rows["vcg", 0.5]["chosen_inflation"] == 1.0 and rows["vcg", 0.5]["welfare"] == 10.0
    gains = {(g["mechanism"], g["inflation"]): g for g in incentives(runs, ["tree"], [0.0, 0.5], seed=0)}
    assert gains["value_greedy", 2.0]["gain"] == pytest.approx(0.205)
    assert gains["vcg", 1.5]["gain"] == pytest.approx(-0.145)
    assert not gains["value_greedy", 2.0]["pays"]        # two seeds cannot reach p < 0.05


def test_vcg_clinching_gap_reads_paired_runs():
    runs = [dict(topology="tree", share=0.5, inflation=2.0, seed=0, mechanism=m, welfare=w, revenue=1.0,
                 utility_truthful=0.1, utility_strategic=0.2, drop_rate=0.3)
            for m, w in (("vcg", 5.0), ("clinching", 5.25))]
    assert vcg_clinching_gap(runs) == (0.25, 1)


def test_run_exp7_writes_every_file(tmp_path):
    report = run_exp7(2, tmp_path, rounds=12, workers=1, show_progress=False, topologies=("tree",),
                      shares=(0.0, 0.5, 1.0))
    assert len(report.runs) == 2 * len(MECHANISMS7) * 6
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["exp7.json", "exp7.md", "exp7.png", "exp7_best_response.csv", "exp7_incentives.csv",
                     "exp7_runs.csv", "exp7_summary.csv", "exp7_tests.csv"]
    md = (tmp_path / "exp7.md").read_text()
    assert "Does inflating pay?" in md and "Best-response welfare" in md
    assert report.notes[0].startswith("VCG over slices and the clinching auction agree on 12 paired runs "
                                      "to within 0.0e+00")
    assert len((tmp_path / "exp7_incentives.csv").read_text().splitlines()) == 1 + 4 * 2 * 2


def test_cli_runs_experiment_7_with_one_json_object(tmp_path):
    result = CliRunner().invoke(app, ["experiment", "economy", "7", "--seeds", "1", "--rounds", "2",
                                      "--workers", "1", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["experiment"] == "7" and data["runs"] == 3 * len(MECHANISMS7) * 12
