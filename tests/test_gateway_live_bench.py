"""`mercato bench gateway --quick` end to end without peers: the report's structure and sane values.

Correctness only: no timing thresholds, which a shared 2-core machine could not keep.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mercato.bench import gateway, gateway_report


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    steps: list[str] = []
    report = gateway.run(gateway.Settings(seed=1, peers=False).quick(), on_step=steps.append)
    paths = gateway_report.write(report, tmp_path_factory.mktemp("bench-gateway"))
    return report, steps, paths


@pytest.fixture
def report(run):
    return run[0]


def test_every_mercato_variant_is_measured_and_no_peer(run, report):
    _, steps, _ = run
    assert [r["name"] for r in report["routers"]] == [*(r.name for r in gateway.MERCATO), gateway.FLOOR]
    assert report["peers"] == {"requested": False, "installed": report["peers"]["installed"], "run": False}
    assert steps[0] == "client ceiling" and f"{gateway.HEADLINE} zero load" in steps
    json.dumps(report)


def test_latencies_errors_and_costs_are_sane(report):
    for r in report["routers"]:
        zero = r["zero_load"]
        assert zero["requests"] == 20 and zero["errors"] == 0
        assert 0 < zero["direct_p50_ms"] <= zero["direct_p99_ms"]
        assert zero["router_p50_ms"] > 0
        if r["kind"] == "mercato" and r["max_wait_ms"] is None:  # the default wait: requests wait for a batch
            assert zero["batch_wait_p50_ms"] > 0
        assert [x["rate"] for x in r["rates"]] == [50, 100]
        for x in r["rates"]:
            assert x["errors"] == 0 and x["direct_errors"] == 0 and x["requests"] >= 1
            assert 0 < x["direct_p50_ms"] <= x["direct_p99_ms"]
            assert x["achieved_rps"] > 0 and x["meaningful"]
        assert r["rss_mib"] > 0 and r["cpu_s_per_1000"] > 0
        assert r["requests"] == 20 + sum(x["requests"] for x in r["rates"])
        assert r["held_rps"] in (None, 50, 100)


def test_client_ceiling_and_targets(report):
    client = report["client"]
    assert client["ceiling_rps"] in (0, 50, 100)
    assert all(row["cpu_s_per_1000"] > 0 for row in client["ladder"])
    targets = {t["target"]: t for t in report["targets"]}
    assert targets["zero_load_added_p50_le_1.5ms"]["met"] is not None
    assert targets["zero_load_added_p50_le_2x_sglang"]["met"] is None  # no peer in this run
    assert targets["500rps_added_p50_le_3ms"]["met"] is None  # 500 req/s is not a quick rate
    assert report["targets_met"] == {k: t["met"] for k, t in targets.items() if t["met"] is not None}


def test_the_floor_splits_the_headline(report):
    routers = {r["name"]: r for r in report["routers"]}
    split = report["floor"]
    assert split["added_p50_ms"] == routers[gateway.HEADLINE]["zero_load"]["added_p50_ms"]
    assert split["stack_p50_ms"] == routers[gateway.FLOOR]["zero_load"]["added_p50_ms"]
    assert split["stack_p50_ms"] + split["own_p50_ms"] == pytest.approx(split["added_p50_ms"])
    assert "stack_x_peer" not in split  # no peer in this run
    assert any(line.startswith(f"zero-load added p50 of {gateway.HEADLINE}")
               for line in gateway_report.notes(report))


def test_files_and_tables(run, report):
    paths = run[2]
    assert [p.name for p in paths] == ["gateway.json", "gateway.png", "report.md"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert "## targets" in paths[2].read_text()
    titles = [title for title, rows in gateway_report.tables(report) if rows]
    assert len(titles) == 4


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError):
        gateway.Settings(duration_s=0)
    with pytest.raises(ValueError):
        gateway.Settings(zero_load_requests=0)


def test_the_held_rule_gives_a_plain_bool_for_the_json_report():
    from mercato.bench.gateway_load import Sample, held

    sample = Sample(np.zeros(3), np.zeros(3), 3, 0, np.float64(100.0), np.float64(99.0), 0.1, 0.2)
    assert held(sample, np.float64(10.0)) is True and held(sample, np.float64(60.0)) is False
    json.dumps({"held": held(sample, np.float64(10.0))})
