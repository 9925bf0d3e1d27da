"""The Grafana dashboard in docs/grafana is built on exactly the gateway's metric names, all of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mercato.gateway.live.metrics import GatewayMetrics

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "mercato.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_series() -> dict[str, str]:
    """Series name -> its metric family, for every family the gateway exports."""
    out = {}
    for family in GatewayMetrics().registry.collect():
        for suffix in SUFFIXES[family.type]:
            out[family.name + suffix] = family.name
    return out


def test_every_query_uses_exported_series_and_every_metric_has_a_panel():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for e in exprs for name in re.findall(r"\bmercato_[a-z_]+", e)}
    series = exported_series()
    assert used <= set(series), sorted(used - set(series))
    assert {series[name] for name in used} == set(series.values())  # no metric left without a panel
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["templating"]["list"][1]["definition"] == "label_values(mercato_requests_total, backend)"
