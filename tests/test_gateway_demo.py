"""`mercato demo` end to end at a tiny size: real engine processes, live gateway, openai client."""

from __future__ import annotations

import csv
import json

import pytest

from mercato.experiments.demo import COLUMNS, DemoSettings, run_policy, write_outputs


def test_demo_runs_one_policy_and_writes_every_file(tmp_path):
    settings = DemoSettings(dialogues=3, turns=2, concurrency=3, max_tokens=16, speed=4.0,
                            fleet=("qwen3-4b", "qwen3-8b"), policies=("auction",), out=tmp_path)
    seen = []
    row, records = run_policy("auction", settings, on_record=seen.append)
    assert row["requests"] == 6 and row["errors"] == 0 and len(seen) == 6
    assert row["ledger_records"] == 6 and row["budget_balanced"] is True
    assert row["payments"] >= row["mean_cost"] * 6 - 1e-6 and row["surplus"] >= 0
    assert 0.0 <= row["kv_hit_rate"] <= 1.0 and row["ttft_p50_ms"] > 0
    paths = write_outputs([row], {"auction": records}, settings)
    assert {p.name for p in paths} == {"summary.csv", "summary.json", "requests.jsonl", "summary.png",
                                       "ttft_cdf.png", "report.md"}
    with (tmp_path / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(COLUMNS) and rows[0]["policy"] == "auction"
    assert json.loads((tmp_path / "summary.json").read_text())["rows"][0]["requests"] == 6
    assert len((tmp_path / "requests.jsonl").read_text().splitlines()) == 6


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"policies": ("auction", "greedy")}, "unknown policies"),
    ({"dialogues": 0}, "must all be >= 1"),
    ({"capacity": 0}, "must all be >= 1"),
    ({"speed": 0.0}, "speed must be > 0"),
])
def test_bad_demo_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DemoSettings(**kwargs)
