"""`mercato experiment iemas`: names, --json, the live check's clear refusal, and `all` writing REPORT.md."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mercato.cli import app
from mercato.experiments.iemas import live
from mercato.experiments.iemas.common import Options
from mercato.experiments.iemas.report import EXPERIMENTS, run_all

runner = CliRunner()


def test_unknown_experiment_is_refused():
    result = runner.invoke(app, ["experiment", "iemas", "fig9"])
    assert result.exit_code == 2 and "choose one of" in result.output


def test_bad_seeds_are_refused(tmp_path):
    result = runner.invoke(app, ["experiment", "iemas", "welfare", "--seeds", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "seeds" in result.output


def test_json_prints_one_object(tmp_path):
    args = ["welfare", "--quick", "--seeds", "2", "--workers", "1", "--json", "--out", str(tmp_path)]
    result = runner.invoke(app, ["experiment", "iemas", *args])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [s["experiment"] for s in payload["sections"]] == ["welfare"] and payload["ok"]
    assert (tmp_path / "welfare.md").is_file()


def test_live_says_clearly_when_the_real_engine_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(live, "server_binary", lambda: None)
    result = runner.invoke(app, ["experiment", "iemas", "live", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "llama-server is not built" in result.output and "mercato engine real build" in result.output
    with pytest.raises(live.EngineUnavailable, match="not built"):
        live.run(Options(out=tmp_path, quick=True))


def test_all_writes_the_report_and_skips_the_live_check_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(live, "server_binary", lambda: None)
    sections = run_all(Options(seeds=2, workers=1, out=tmp_path, quick=True, show_progress=False))
    assert [s.name for s in sections] == list(EXPERIMENTS)
    assert [s.ok for s in sections] == [True] * (len(EXPERIMENTS) - 1) + [False]
    report = (tmp_path / "REPORT.md").read_text()
    assert report.startswith("# IEMAS on mercato")
    assert "Live check skipped" in report and "**Skipped:** llama-server is not built" in report
    headings = ("## Table 1", "## Fig. 3", "## Fig. 4", "## Fig. 5", "## Fig. 6", "## Fig. 7",
                "## Discussion")
    for heading in headings:
        assert heading in report
    for png in ("table1.png", "predictors_fig3.png", "welfare_fig4.png", "truthfulness_fig5.png",
                "clustering_fig6.png", "schemes_fig7.png"):
        assert f"({png})" in report and (tmp_path / png).is_file()
    assert json.loads((tmp_path / "all.json").read_text())["sections"][-1]["ok"] is False
