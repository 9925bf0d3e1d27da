"""`mercato bench engine` and the engine CLI: equal results across decode models, report shape."""

from __future__ import annotations

import json
from dataclasses import replace

from typer.testing import CliRunner

from mercato.bench import engine as bench
from mercato.cli import app
from mercato.workloads import synthetic_dialogues


def test_analytic_decode_equals_token_stepping_and_chain_cache_changes_nothing():
    workload = synthetic_dialogues("coqa", 40, seed=5, turns=bench.TURNS)
    results = {v: bench.drive(bench._make(v, 5), workload, concurrency=20) for v in bench.VARIANTS}
    assert len(results["mercato"]) == 40 * bench.TURNS
    assert bench._same(results["mercato"], results["stepped"])
    assert bench._same(results["mercato"], results["no_chain_cache"])
    later = list(results["stepped"])
    later[-1] = replace(later[-1], finish_time=later[-1].finish_time + 1e-3)
    assert not bench._same(results["mercato"], later)


def test_bench_report_is_complete():
    report = bench.run(seed=1, dialogues=12, repeats=1)
    assert report["requests"] == 12 * bench.TURNS
    assert report["identical_results"] is True
    assert set(report["variants"]) == set(bench.VARIANTS)
    assert report["simulated"]["prefix_cache_hit_rate"] > 0.5  # multi-turn dialogues reuse their prefix
    assert report["speedup_vs_stepped"] > 0 and isinstance(report["target_met"], bool)


def test_engine_profiles_command_prints_json():
    out = CliRunner().invoke(app, ["engine", "profiles", "--json"])
    assert out.exit_code == 0
    data = json.loads(out.stdout)
    assert {row["name"] for row in data["speed"]} >= {"qwen3-4b", "qwen3-8b", "llama3-8b", "qwen3-32b"}


def test_engine_serve_rejects_an_unknown_profile():
    out = CliRunner().invoke(app, ["engine", "serve", "--profile", "nope", "--port", "1"])
    assert out.exit_code != 0 and "unknown model profile" in out.output
