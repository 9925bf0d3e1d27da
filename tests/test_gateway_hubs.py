"""Proxy hubs: schemes build valid partitions, the classifier only picks capable hubs, runs finish."""

from __future__ import annotations

import pytest

from mercato.gateway.core.hubs import SCHEMES, Hub, HubRouter, build_hubs
from mercato.gateway.core.router import RouterSettings
from mercato.gateway.core.types import BackendSpec, BuyerReport, RouteRequest
from mercato.gateway.live.assemble import build_router
from mercato.gateway.sim.cluster import InProcessCluster
from mercato.workloads import synthetic_dialogues


def backends(n: int = 8) -> list[BackendSpec]:
    domains = ["coqa", "quac", "hotpotqa", "coqa"]
    profiles = ["qwen3-4b", "qwen3-8b", "llama3-8b"]
    return [BackendSpec(name=f"b{i}", model=profiles[i % 3], capacity=12, price_input=0.05,
                        price_cached_input=0.025, price_output=0.2, profile=profiles[i % 3],
                        domains=(domains[i % 4],)) for i in range(n)]


def req(i: int, domain: str = "coqa", model: str = "mercato", delta: float = 0.5) -> RouteRequest:
    return RouteRequest(request_id=f"r{i}", prompt="hello " * 20, prompt_tokens=30, max_tokens=16,
                        session_id=f"s{i}", turn=1, domain=domain, source="t", buyer="b",
                        report=BuyerReport(delta=delta), arrival=0.0, model=model)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("k", [1, 2, 4])
def test_schemes_partition_backends(scheme, k):
    specs = backends()
    hubs, _ = build_hubs(scheme, specs, k)
    assert len(hubs) == k
    members = [b for h in hubs for b in h.backends]
    assert sorted(members) == sorted(b.name for b in specs)


def test_ideal_groups_by_domain():
    hubs, _ = build_hubs("ideal", backends(), 3)
    for hub in hubs:
        assert len(hub.domains) <= 2  # contiguous blocks of a sorted domain order


@pytest.mark.parametrize("scheme", SCHEMES)
def test_requests_only_reach_hubs_with_a_capable_backend(scheme):
    specs = backends()
    hubs, classifier = build_hubs(scheme, specs, 4)
    router = HubRouter(specs, hubs, "auction", classifier=classifier)
    router.set_health("b0", False)
    models = ("mercato", "qwen3-4b", "llama3-8b")
    cases = [(d, m) for d in ("coqa", "quac", "hotpotqa", "other") for m in models]
    for d in router.route([req(i, domain=d, model=m) for i, (d, m) in enumerate(cases)], 0.0):
        assert d.backends, d.request
        served = {s.model for s in specs if s.name in d.backends}
        assert d.request.any_model or served == {d.request.model}
        assert "b0" not in d.backends
        hub = router.hub_of(d)
        assert set(d.backends) <= set(next(h for h in router.hubs if h.name == hub).backends)


def test_no_capable_hub_gives_empty_decision():
    router = HubRouter(backends(3), [Hub("a", ("b0", "b1")), Hub("b", ("b2",))])
    assert router.route([req(0, model="gpt-9")], 0.0)[0].backends == []


def test_bad_hub_layouts():
    specs = backends(3)
    with pytest.raises(ValueError, match="no hub"):
        HubRouter(specs, [Hub("a", ("b0", "b1"))])
    with pytest.raises(ValueError, match="more than one hub"):
        HubRouter(specs, [Hub("a", ("b0", "b1")), Hub("b", ("b1", "b2"))])
    with pytest.raises(ValueError, match="unknown backends"):
        HubRouter(specs, [Hub("a", ("b0", "b1", "b2", "zz"))])
    with pytest.raises(ValueError, match="unknown clustering scheme"):
        build_hubs("star", specs, 2)
    with pytest.raises(ValueError, match="k must be"):
        build_hubs("ideal", specs, 9)


def test_hub_router_runs_in_process():
    specs = backends(6)
    hubs, classifier = build_hubs("ideal", specs, 3)
    cluster = InProcessCluster(specs, router=HubRouter(specs, hubs, "auction", classifier=classifier))
    logs = cluster.run(synthetic_dialogues("coqa", 6, seed=1, turns=3), concurrency=4)
    assert len(logs) == 18
    totals = cluster.router.snapshot()["totals"]
    assert totals["requests"] == 18 and totals["payments"] >= totals["cost"] - 1e-9


def test_hub_router_defers_learning_in_every_hub_until_learn():
    specs = backends(6)
    hubs, classifier = build_hubs("ideal", specs, 3)
    router = HubRouter(specs, hubs, "auction", RouterSettings(defer_learning=True), classifier)
    cluster = InProcessCluster(specs, router=router)
    cluster.run(synthetic_dialogues("coqa", 6, seed=1, turns=3), concurrency=4)
    assert router.snapshot()["unlearned"] == 18
    assert router.learn() == 18
    assert router.snapshot()["unlearned"] == 0
    assert sum(b.observations for r in router.routers.values() for b in r.predictors.backends) == 18


def test_config_with_hubs_builds_a_hub_router():
    from mercato.gateway.live.config import ConfigError, GatewayConfig

    def backend(name: str, hub: str | None, domain: str) -> dict:
        return {"name": name, "url": "http://127.0.0.1:9/v1", "model": "m", "hub": hub, "domains": [domain],
                "prices": {"input": 0.05, "cached_input": 0.025, "output": 0.2}}

    config = GatewayConfig(backends=[backend("a", "qa", "coqa"), backend("b", "qa", "coqa"),
                                     backend("c", "reason", "hotpotqa")])
    router = build_router(config)
    assert isinstance(router, HubRouter)
    assert {h.name: h.domains for h in router.hubs} == {"qa": {"coqa"}, "reason": {"hotpotqa"}}
    d = router.route([req(1, domain="hotpotqa")], 0.0)[0]
    assert d.backends == ["c"]
    with pytest.raises(ConfigError, match="hub is required"):
        build_router(GatewayConfig(backends=[backend("a", "qa", "coqa"), backend("b", None, "coqa")]))
