"""`mercato bench kv-index` and `mercato bench routing-state`: what they measure and how they compare."""

from __future__ import annotations

import msgspec
import pytest

from mercato.bench import kv_index, routing_state
from mercato.engine.kv_events import ARRAY


def test_the_engine_event_stream_is_under_pressure_and_its_update_cost_is_per_event():
    payloads = kv_index.engine_payloads(0)
    kinds = {type(e).__name__ for p in payloads for e in msgspec.msgpack.decode(p, type=ARRAY.batch).events}
    assert kinds == {"BlockStored", "BlockRemoved"}  # the 400-block pool evicts
    cost = kv_index.update_cost(payloads[:40], repeats=2)
    assert cost["events"] >= 40 and cost["blocks_stored"] > cost["events"]
    whole, alone = cost["us_per_event"], cost["us_per_event_index_only"]
    assert 0 < whole["min"] <= whole["median"] <= whole["max"] and alone["median"] > 0


def test_prompt_chain_cost_grows_with_the_prompt():
    short, long = kv_index.chain_cost(200, 2), kv_index.chain_cost(4000, 2)
    assert 0 < short["median"] < long["median"]


def _row(scenario, router, state, kv, p50=40.0, seed=0):
    return {"scenario": scenario, "router": router, "state": state, "seed": seed, "requests": 10, "errors": 0,
            "kv_hit": kv, "ttft_p50_ms": p50, "ttft_p95_ms": 2 * p50, "mean_cost": 10.0}


def test_routing_state_gains_are_exact_minus_approximate_averaged_over_seeds():
    runs = [_row("pressure", "auction", "approximate", 0.60, seed=0),
            _row("pressure", "auction", "approximate", 0.62, seed=1),
            _row("pressure", "auction", "exact", 0.66, 30.0, seed=0),
            _row("pressure", "auction", "exact", 0.66, 30.0, seed=1),
            _row("default", "auction", "exact", 0.8)]
    rows = routing_state.combine_states(runs)
    approx = next(r for r in rows if r["state"] == "approximate")
    assert approx["kv_hit"] == pytest.approx(0.61)
    assert (approx["kv_hit_lo"], approx["kv_hit_hi"]) == (0.60, 0.62)
    [gain] = routing_state.gains(rows)  # the default scenario has no approximate row to compare with
    assert gain["scenario"] == "pressure" and gain["kv_hit"] == pytest.approx(0.05)
    assert gain["ttft_p50_ms"] == pytest.approx(-10.0)


def test_routing_state_settings_refuse_unknown_names_and_count_cells():
    assert routing_state.StateSettings(repeats=2).cells() == 2 * 2 * 2 * 2
    with pytest.raises(ValueError, match="fleet"):
        routing_state.StateSettings(fleet="nope")
    with pytest.raises(ValueError, match="router"):
        routing_state.StateSettings(routers=("round_robin",))
