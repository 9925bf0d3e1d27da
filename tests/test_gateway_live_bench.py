"""`mercato bench gateway` on a tiny rate: the report has its keys and sensible values."""

from __future__ import annotations

import json

import pytest

from mercato.bench import gateway


def test_bench_gateway_report_at_a_small_rate():
    steps: list[str] = []
    report = gateway.run(seed=1, duration_s=0.5, rates=(20,), on_step=steps.append)
    json.dumps(report)
    assert steps == ["direct 20/s", "gateway 20/s"]
    (row,) = report["rates"]
    assert row["rate"] == 20 and row["requests"] >= 1 and row["errors"] == 0
    assert 0 < row["direct_p50_ms"] <= row["direct_p99_ms"]
    assert row["gateway_p50_ms"] > 0 and 0 <= row["batch_wait_p50_ms"] <= row["gateway_p50_ms"]
    assert report["ledger_commit_ms"] > 0
    assert set(report["targets_met"]) == {"500rps_added_p50_le_2ms", "500rps_added_p99_le_10ms"}
    assert report["targets_met"]["500rps_added_p50_le_2ms"] is False  # 500 req/s was not measured
    assert report["max_rate_p99_added_le_50ms"] in (None, 20)


def test_bench_gateway_rejects_bad_settings():
    with pytest.raises(ValueError):
        gateway.run(duration_s=0)
