"""Economy experiments and commands, on tiny grids: files, paper columns, JSON, errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mercato.bench import economy as bench
from mercato.cli import app
from mercato.economy import paper
from mercato.experiments import economy
from mercato.experiments.economy_report import Options

runner = CliRunner()


def tiny(tmp_path, **kw) -> Options:
    return Options(seeds=2, rounds=25, workers=1, out=tmp_path, show_progress=False, **kw)


def test_experiment1_writes_every_file_with_the_paper_beside_ours(tmp_path):
    report = economy.run_experiment("1", tiny(tmp_path))
    assert len(report.runs) == 12 * 2 and len(report.summary) == 12
    row = next(r for r in report.summary if (r["topology"], r["load"]) == ("sp", "high"))
    assert row["volatility_paper"] == paper.EXP1["sp", "high"]["volatility"]
    assert row["median_latency_lo"] <= row["median_latency"] <= row["median_latency_hi"]
    names = {p.rsplit("/", 1)[-1] for p in report.files}
    assert names == {"exp1_runs.csv", "exp1_summary.csv", "exp1_tests.csv", "exp1.png", "exp1.md",
                     "exp1.json"}
    saved = json.loads((tmp_path / "exp1.json").read_text())
    assert saved["runs"] == 24 and saved["paper_table"] == "Table S5"
    assert "| topology | load |" in (tmp_path / "exp1.md").read_text()
    assert any(t["test"].startswith("Kruskal") for t in report.tests)


def test_experiment5_reports_synergy_with_an_interval(tmp_path):
    report = economy.run_experiment("5", tiny(tmp_path))
    rows = [t for t in report.tests if t["test"].startswith("synergy")]
    assert len(rows) == 3 * 2 * 2
    for t in rows:
        assert t["a"] in {"additive", "super-additive", "sub-additive"}
        assert t["p"] <= t["statistic"] <= t["p_holm"]


def test_cli_prints_one_json_object(tmp_path):
    result = runner.invoke(app, ["experiment", "economy", "3", "--seeds", "2", "--rounds", "20",
                                 "--workers", "1", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["experiment"] == "3" and report["runs"] == 12 * 2
    assert {r["governance"] for r in report["summary"]} == {"none", "moderate", "strict"}


@pytest.mark.parametrize("args, message", [
    (["experiment", "economy", "8"], "choose one of 1, 2, 3, 4, 5, 6, 7 or all"),
    (["experiment", "economy", "1", "--workers", "0"], "workers must be >= 1"),
    (["experiment", "economy", "1", "--rounds", "1"], "rounds must be >= 2"),
])
def test_cli_rejects_bad_arguments_clearly(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_experiment7_is_run_only_when_its_module_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(economy, "EXP7_MODULE", "mercato.experiments.no_such_module")
    assert not economy.exp7_available()
    with pytest.raises(ValueError, match="Experiment 7 is not available"):
        economy.run_experiment("7", tiny(tmp_path))


def test_bench_reports_timings_and_targets(monkeypatch):
    monkeypatch.setattr(bench, "bench_experiment1", lambda seed, workers, show_progress: 12.5)
    report = bench.run(repeats=1, show_progress=False)
    assert 0 < report["one_run_s"] < 30
    assert report["experiment1_s"] == 12.5
    assert report["speedup_experiment1"] == pytest.approx(bench.REFERENCE_EXP1_S / 12.5, rel=0.01)
    assert set(report["targets_met"]) == {"one_run_le_0.5s"}
    json.dumps(report)


def test_the_welfare_aware_variant_reruns_only_the_rules_it_changes(tmp_path):
    report = economy.run_experiment("6", tiny(tmp_path, variant=True))
    assert report.variant_runs == 2 * 3 * 2 * 2 * 2  # value-greedy and market only, 2 seeds
    assert len(report.variant) == len(report.summary) == 48
    for v in report.variant:
        r = next(r for r in report.summary if all(r[f] == v[f] for f in report.factors))
        if v["mechanism"] in ("random", "edf"):
            assert (r["welfare"], r["drop_rate"]) == (v["welfare"], v["drop_rate"])
    text = (tmp_path / "exp6.md").read_text()
    assert "welfare-aware variant instead: Of" in text and "W welfare-aware" in text
    assert (tmp_path / "exp6_variant_summary.csv").exists()
