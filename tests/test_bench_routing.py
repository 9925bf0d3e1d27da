"""`mercato bench routing`: the same metrics for every router, targets per cell, its files."""

from __future__ import annotations

import json

import pytest

from mercato.bench import routing, routing_ablation, routing_report, routing_state
from mercato.bench.routing import RoutingSettings, cell_metrics, targets
from mercato.workloads.loadgen import RequestRecord


def _record(served_by, prompt=1000, cached=600, completion=20, ttft=50.0, correct=True, error=None):
    return RequestRecord("run", "d", 1, "coqa", "fleet", 0.0, ttft, 100.0, prompt, cached, completion,
                         served_by, "answer", "gold", 1.0, correct, error)


def test_every_router_is_priced_at_the_serving_engines_list_prices():
    prices = {"a": (0.1, 0.05, 0.3), "b": (0.2, 0.1, 0.6)}
    records = [_record("a"), _record("b", cached=0), _record(None), _record("a", error="boom")]
    m = cell_metrics(records, prices)
    cost_a = 0.1 * 400 + 0.05 * 600 + 0.3 * 20
    cost_b = 0.2 * 1000 + 0.6 * 20
    assert m["priced"] == 2 and m["errors"] == 1
    assert m["mean_cost"] == pytest.approx((cost_a + cost_b) / 2)
    value = 200 * 0.5 * 1.0 - 1000 * 0.5 * 0.05  # bid 1, delta 0.5, correct, 50 ms
    assert m["welfare"] == pytest.approx(2 * value - cost_a - cost_b)
    # the same tokens at the fleet's cheapest prices (here all of a's)
    floor_b = 0.1 * 1000 + 0.3 * 20
    assert m["cheapest_cost"] == pytest.approx((cost_a + floor_b) / 2)


def test_the_cost_floor_prices_each_request_at_its_own_cheapest_engine():
    # x is cheaper for input, y for output: the per-kind cheapest prices mix both, which no
    # single engine charges, so the floor takes the cheaper engine per request instead
    prices = {"x": (0.03, 0.015, 0.1), "y": (0.05, 0.025, 0.08)}
    long_prompt, long_answer = _record("y"), _record("x", prompt=10, cached=0, completion=1000)
    m = cell_metrics([long_prompt, long_answer], prices)
    floor_prompt = 0.03 * 400 + 0.015 * 600 + 0.1 * 20  # x: 23.0 (y would charge 36.6)
    floor_answer = 0.05 * 10 + 0.08 * 1000  # y: 80.5 (x would charge 100.3)
    assert m["cheapest_cost"] == pytest.approx((floor_prompt + floor_answer) / 2)


def _row(router, kv, p50, p95, cost, fleet="four", workload="coqa", arrival="burst"):
    return {"fleet": fleet, "workload": workload, "arrival": arrival, "router": router, "kv_hit": kv,
            "ttft_p50_ms": p50, "ttft_p95_ms": p95, "mean_cost": cost, "cheapest_cost": 0.5 * cost}


def test_targets_compare_the_auction_with_the_real_peer_when_present():
    rows = [_row("mercato:auction", 0.798, 40, 90, 8.0), _row("mercato:cache_aware", 0.9, 10, 10, 100.0),
            _row("sglang:cache_aware", 0.80, 45, 95, 10.0)]
    [t] = targets(rows)
    assert t["peer"] == "sglang:cache_aware" and t["all"]  # kv within 0.005, faster, cost <= 0.8x
    rows[0]["mean_cost"] = 8.5
    [t] = targets(rows)
    assert not t["cost"] and not t["all"]
    [t] = targets([r for r in rows if not r["router"].startswith("sglang")])
    assert t["peer"] == "mercato:cache_aware" and not t["kv_hit"]


def test_the_same_gateway_comparison_and_the_cost_floor():
    rows = [_row("mercato:auction", 0.80, 40, 90, 9.0), _row("mercato:cache_aware", 0.80, 41, 91, 12.0),
            _row("sglang:cache_aware", 0.80, 30, 60, 10.0)]
    [peer] = targets(rows)
    [same] = targets(rows, "mercato:cache_aware")
    assert peer["peer"] == "sglang:cache_aware" and not peer["ttft_p95"]
    assert same["peer"] == "mercato:cache_aware" and same["ttft_p95"] and same["ttft_p50"]
    assert peer["cost_ratio"] == pytest.approx(0.9) and peer["floor_ratio"] == pytest.approx(0.5)
    assert peer["cost_reachable"]
    rows[2]["cheapest_cost"] = 8.5  # even the cheapest engine for every request costs 0.85x the peer
    [peer] = targets(rows)
    assert peer["floor_ratio"] == pytest.approx(0.85) and not peer["cost_reachable"]


def test_cells_over_several_seeds_report_the_mean_and_the_spread():
    runs = [{**_row("mercato:auction", kv, 40, p95, cost), "seed": seed, "requests": 10, "errors": 0,
             "accuracy": 0.5, "welfare": 1.0}
            for seed, (kv, p95, cost) in enumerate([(0.7, 100, 10.0), (0.8, 140, 14.0)])]
    [row] = routing.combine(runs)
    assert row["seeds"] == 2 and row["requests"] == 20
    assert row["kv_hit"] == pytest.approx(0.75) and (row["kv_hit_lo"], row["kv_hit_hi"]) == (0.7, 0.8)
    assert row["ttft_p95_ms"] == pytest.approx(120) and row["mean_cost_hi"] == 14.0


def test_settings_name_what_is_wrong():
    with pytest.raises(ValueError, match="fleet"):
        RoutingSettings(fleets=("huge",))
    with pytest.raises(ValueError, match=">= 1"):
        RoutingSettings(dialogues=0)
    with pytest.raises(ValueError, match="repeats"):
        RoutingSettings(repeats=0)
    assert RoutingSettings(peers=False).routers() == ["mercato:auction", "mercato:cache_aware",
                                                      "mercato:round_robin"]


def test_a_live_cell_and_the_report(tmp_path):
    settings = RoutingSettings(fleets=("four",), workloads=("coqa",), arrivals=("burst",), dialogues=4,
                               turns=2, concurrency=4, speed=20.0, peers=False)
    rows = [routing.run_cell(settings, "four", "coqa", "burst", r, tmp_path)
            for r in ("mercato:auction", "mercato:cache_aware")]
    for row in rows:
        assert row["requests"] == 8 and row["errors"] == 0 and row["priced"] == 8
        assert 0.0 <= row["kv_hit"] <= 1.0 and row["accuracy"] is not None
        # 4 first turns and 4 second turns: each p95 lies within the whole cell's TTFT range
        assert min(row["first_p95_ms"], row["later_p95_ms"]) > 0.0
        assert max(row["first_p95_ms"], row["later_p95_ms"]) >= row["ttft_p95_ms"] * 0.99
    ablation = [routing_ablation.run_variant("iemas", "four", "coqa", settings)]
    combined = routing.combine(rows)
    report = {"routers": ["mercato:auction", "mercato:cache_aware"], "peers_installed": False, "runs": rows,
              "rows": combined, "targets": targets(combined)}
    paths = routing_report.write(report, ablation, tmp_path / "out")
    assert {p.name for p in paths} == {"routing.csv", "runs.csv", "routing.json", "ablation.csv",
                                       "routing.png", "report.md"}
    text = (tmp_path / "out" / "report.md").read_text()
    won = int(report["targets"][0]["all"])
    assert f"Cells won by the auction: {won} of 1" in text
    assert ("The peer wins 1 of 1 cells" in text) == (not won)
    if not won:  # where the peer wins, the report says so before anything else
        assert text.index("The peer wins") < text.index("Cells won")


def test_the_report_names_the_cells_whose_cost_target_no_router_can_reach(tmp_path):
    rows = [_row("mercato:auction", 0.80, 40, 90, 9.0, workload=w) for w in ("coqa", "quac")]
    rows += [_row("sglang:cache_aware", 0.80, 45, 95, 10.0, workload=w) | {"cheapest_cost": floor}
             for w, floor in (("coqa", 8.5), ("quac", 6.0))]
    report = {"routers": ["mercato:auction", "sglang:cache_aware"], "peers_installed": True, "runs": rows,
              "rows": rows, "targets": targets(rows)}
    routing_report.write(report, [], tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "The cost target is out of reach in 1 of 2 cells** (floor above 0.8): four/coqa/burst." in text


def test_the_report_carries_the_cache_state_comparison(tmp_path):
    def run(state, kv, seed):
        return {"scenario": "pressure", "router": "auction", "state": state, "seed": seed, "requests": 10,
                "errors": 0, "kv_hit": kv, "ttft_p50_ms": 40.0, "ttft_p95_ms": 80.0, "mean_cost": 10.0}

    runs = [run("approximate", 0.50, 0), run("exact", 0.58, 0)]
    rows = routing_state.combine_states(runs)
    settings = routing_state.StateSettings.smoke(seed=3)
    met = {"auction kv_hit +0.03 under pressure": True}
    cache_state = {"settings": vars(settings), "runs": runs, "rows": rows, "gains": routing_state.gains(rows),
                   "targets_met": met}
    report = {"routers": ["mercato:auction"], "peers_installed": False, "runs": [], "rows": [], "targets": []}
    paths = routing_report.write(report, [], tmp_path, cache_state)
    assert tmp_path / "state.csv" in paths
    assert "pressure,auction,approximate" in (tmp_path / "state.csv").read_text()
    text = (tmp_path / "report.md").read_text()
    section = text[text.index("## Cache state: exact (KV events) against approximate"):]
    assert "96 blocks of 16 tokens per engine and 4-turn dialogues" in section
    assert "auction kv_hit +0.03 under pressure: yes" in section
    assert "0.08" in section.split("Exact minus approximate:")[1]  # 0.58 - 0.50
    assert json.loads((tmp_path / "routing.json").read_text())["cache_state"]["gains"][0]["kv_hit"] == \
        pytest.approx(0.08)
