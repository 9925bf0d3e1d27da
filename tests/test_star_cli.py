"""`mercato star plan`, `mercato experiment star` and `mercato bench star` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mercato.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "star"
runner = CliRunner()


def test_plan_on_the_examples_prints_allocation_and_payments():
    result = runner.invoke(app, ["star", "plan", str(EXAMPLES / "workflow.yaml"), "--agents",
                                 str(EXAMPLES / "agents.yaml")])
    assert result.exit_code == 0, result.output
    assert "case_retriever" in result.output and "solver: junction_tree" in result.output
    assert "total payment: STAR $" in result.output


def test_plan_json_is_one_object_with_consistent_accounts():
    result = runner.invoke(app, ["star", "plan", str(EXAMPLES / "workflow.yaml"), "--agents",
                                 str(EXAMPLES / "agents.yaml"), "--json", "--solver", "milp"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["solver"] == "milp" and len(report["nodes"]) == 12
    assert sum(a["payment"] for a in report["agents"]) == pytest.approx(report["total_payment"])
    for a in report["agents"]:
        assert a["utility"] == pytest.approx(a["payment"] - a["cost"])
        assert a["utility"] >= -1e-12  # the example's bids are truthful
    assert report["total_payment"] < report["baselines"]["homogeneous"]["total_payment"]


@pytest.mark.parametrize(("workflow", "message"), [
    ("nodes:\n  - {name: a, difficulty: 1, input_tokens: 1, output_tokens: 1}\n"
     "  - {name: b, difficulty: 1, input_tokens: 1, output_tokens: 1}\n"
     "edges: [{from: a, to: b}, {from: b, to: a}]\n", "cycle: a -> b -> a"),
    ("nodes: [{name: a, difficulty: 1, input_tokens: 1, output_tokens: 1, agents: [nobody]}]\n",
     "unknown agent 'nobody'"),
    ("nodes: [{name: a, difficulty: 1, input_tokens: -3, output_tokens: 1}]\n", "node 'a': input_tokens"),
    ("nodes: [{name: a, difficulty: 3, input_tokens: 1, output_tokens: 1}]\n", "node 'a' (difficulty 3)"),
    ("nodes: []\n", "'nodes' must be a non-empty list"),
])
def test_plan_bad_input_is_a_clear_error(tmp_path, workflow, message):
    path = tmp_path / "wf.yaml"
    path.write_text(workflow)
    agents = tmp_path / "agents.yaml"
    agents.write_text("agents: [{name: x, tier: 2, bid: 1, prior: {type: uniform, low: 0.5, high: 2}}]\n")
    result = runner.invoke(app, ["star", "plan", str(path), "--agents", str(agents)])
    assert result.exit_code == 2
    assert message in result.output


def test_plan_json_stays_valid_when_an_agent_bids_above_its_reserve(tmp_path):
    agents = tmp_path / "agents.yaml"
    agents.write_text((EXAMPLES / "agents.yaml").read_text().replace("bid: 0.30", "bid: 0.60"))
    result = runner.invoke(app, ["star", "plan", str(EXAMPLES / "workflow.yaml"), "--agents", str(agents),
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    refused = next(a for a in report["agents"] if a["agent"] == "t1c")
    assert refused["virtual_cost"] is None and refused["nodes"] == 0


@pytest.mark.parametrize(("option", "message"), [
    (["--payments", "guess"], "unknown payment method 'guess'"),
    (["--solver", "tree"], "tree solver needs a workflow without undirected cycles"),
])
def test_plan_bad_options_are_clear_errors(option, message):
    result = runner.invoke(app, ["star", "plan", str(EXAMPLES / "workflow.yaml"), "--agents",
                                 str(EXAMPLES / "agents.yaml"), *option])
    assert result.exit_code == 2
    assert message in result.output


def test_experiment_writes_results(tmp_path):
    out = tmp_path / "star"
    result = runner.invoke(app, ["experiment", "star", "--trials", "2", "--dsic-trials", "1", "--seed", "1",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["scenario"] for r in report["summary"]] == ["S1", "S2", "S3", "S4"]
    assert report["dsic"]["max_gain_usd"] <= 1e-9
    assert all(v <= 1e-12 for v in report["individual_rationality_worst_shortfall_usd"].values())
    for name in ("trials.csv", "summary.csv", "broadcaster_trap.csv", "dsic.csv", "summary.json",
                 "summary.md", "payments.png", "reductions.png", "trap.png", "claims.csv", "sweep.csv"):
        assert (out / name).stat().st_size > 0, name
    text = (out / "summary.md").read_text()
    assert "| S4: Hourglass-structure |" in text
    assert text.splitlines()[2].startswith("Of 38 claims: ")
    assert len(report["sweep"]) == 6 * 4  # every (rho, kappa) point, every scenario


def test_bench_reports_targets():
    result = runner.invoke(app, ["bench", "star", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["scenarios"]) == {"S1", "S2", "S3", "S4"}
    assert report["targets_met"]["solvers_agree"]
    assert report["scenarios"]["S3"]["auto_solver"] == "tree"
