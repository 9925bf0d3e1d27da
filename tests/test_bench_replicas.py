"""`mercato bench replicas`: its targets read the right rows, and its files and tables are written.

The end-to-end run starts fleets and gateways for about a minute even with ``--quick``; the
drills in test_gateway_replicas_drill.py start the same ``mercato serve --workers`` processes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mercato.bench import replicas, replicas_report


def variant(workers: int, shared: bool, kv_hit: float) -> dict[str, Any]:
    v = replicas.Variant(workers, shared)
    kv = {"kv_hit": kv_hit, "kv_hit_lo": kv_hit - 0.01, "kv_hit_hi": kv_hit + 0.01, "seeds": 2,
          "ttft_p50_ms": 30.0, "ttft_p95_ms": 120.0, "mean_cost": 12.0, "requests": 384, "errors": 0}
    return {"workers": workers, "shared": shared, "name": v.name, "kv": kv}


def ladder(label: str, workers: int, held: int | None, lower_bound: bool, shared: bool) -> dict[str, Any]:
    rates = [{"rate": 100, "achieved_rps": 95.0, "added_p50_ms": 5.0, "added_p99_ms": 12.0, "errors": 0,
              "direct_errors": 0, "held": True, "meaningful": True}]
    return {"label": label, "workers": workers, "held_rps": held, "held_rps_is_lower_bound": lower_bound,
            "held_rps_per_core": (held or 0) / min(workers, 2), "cores": min(workers, 2), "rates": rates,
            "shared_servers": shared}


def test_variants_and_names() -> None:
    names = [v.name for v in replicas.ReplicaSettings().variants()]
    assert names == ["1", "2 shared", "4 shared", "2 independent", "4 independent"]
    quick = replicas.ReplicaSettings().quick()
    assert [v.name for v in quick.variants()] == ["1", "2 shared", "2 independent"]
    with pytest.raises(ValueError):
        replicas.ReplicaSettings(workers=())
    with pytest.raises(ValueError):
        replicas.ReplicaSettings(repeats=0)


def test_targets_read_the_most_workers_and_only_shared_ladders() -> None:
    kv = {v["name"]: v for v in [variant(1, True, 0.80), variant(4, True, 0.795), variant(4, False, 0.77)]}
    throughput = [ladder("1, SQLite", 1, 900, False, False), ladder("1, shared", 1, 300, False, True),
                  ladder("2, shared", 2, 500, False, True), ladder("4, shared", 4, 200, False, True)]
    met = {t["target"]: t for t in replicas.targets(kv, throughput, cpus=2)}
    assert met["kv_hit_4_shared_within_0.01_of_1"]["met"] is True
    assert met["kv_hit_4_independent_below_shared"]["value"] == pytest.approx(0.025)
    grows = met["held_rps_grows_with_workers_up_to_2_cores"]
    assert grows["met"] is True and grows["value"] == {1: 300, 2: 500, 4: 200}  # 4 > 2 cores: not judged
    kv["4 shared"] = variant(4, True, 0.78)
    throughput[2] = ladder("2, shared", 2, 300, False, True)
    met = {t["target"]: t["met"] for t in replicas.targets(kv, throughput, cpus=2)}
    assert met["kv_hit_4_shared_within_0.01_of_1"] is False
    assert met["held_rps_grows_with_workers_up_to_2_cores"] is False
    throughput[1] = ladder("1, shared", 1, 300, True, True)  # held every rate tried: may hold more
    met = {t["target"]: t["met"] for t in replicas.targets(kv, throughput, cpus=2)}
    assert met["held_rps_grows_with_workers_up_to_2_cores"] is None


def test_report_files_and_tables(tmp_path) -> None:
    kv = [variant(1, True, 0.80), variant(2, True, 0.79), variant(2, False, 0.77)]
    throughput = [ladder("1, SQLite, no Redis", 1, 300, False, False),
                  ladder("1, Redis + PostgreSQL", 1, 200, False, True),
                  ladder("2, Redis + PostgreSQL", 2, None, False, True)]
    met = replicas.targets({v["name"]: v for v in kv}, throughput, cpus=2)
    report = {"settings": {**vars(replicas.ReplicaSettings())}, "cpus": 2, "load_average_1m": 0.5,
              "fleet": {"kv": "four", "throughput": "one engine"}, "held_rule": "no errors",
              "client": {"ceiling_rps": 1000, "holds_every_rate_tried": True, "ladder": []},
              "variants": kv, "throughput": throughput, "targets": met,
              "targets_met": {t["target"]: t["met"] for t in met if t["met"] is not None}}
    paths = replicas_report.write(report, tmp_path)
    assert [p.name for p in paths] == ["replicas.json", "replicas.png", "report.md"]
    assert json.loads(paths[0].read_text())["throughput"][2]["held_rps"] is None
    titles = [title for title, rows in replicas_report.tables(report) if rows]
    assert len(titles) == 4
    held = [row["held rps"] for row in replicas_report.throughput_rows(report)]
    assert held == ["300", "200", "none"]
    text = paths[2].read_text()
    assert "| 2 independent |" in text and "N cores" in text and "0.790-0.810" in text
