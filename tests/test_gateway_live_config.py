"""Gateway configuration: the example file loads, and every mistake names its field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mercato.gateway.core.batching import BatchingRule
from mercato.gateway.core.router import RouterSettings
from mercato.gateway.live.assemble import backend_specs, batching_rule, router_settings
from mercato.gateway.live.config import ConfigError, GatewayConfig, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gateway.yaml"


def backend(name: str, **over):
    base = {"name": name, "url": f"http://127.0.0.1:800{len(name)}/v1", "model": "qwen3-8b",
            "prices": {"input": 1e-6, "cached_input": 1e-7, "output": 4e-6}}
    return base | over


def errors_of(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_example_config_loads_with_the_batching_defaults():
    config = load_config(EXAMPLE)
    assert isinstance(config, GatewayConfig)
    assert config.batching.max_batch_size == 16
    assert config.batching.max_wait_ms == 10 and config.batching.quiet_ms == 0
    assert batching_rule(config) == BatchingRule(16, 0.010, 0.0)  # IEMAS 16 / 10 ms, or at a loop turn's end
    assert config.batching.queue_limit == 4096
    specs = backend_specs(config)
    assert len(specs) >= 4 and len({s.profile for s in specs}) >= 3
    assert all(s.url and s.url.endswith("/v1") for s in specs)
    assert isinstance(router_settings(config), RouterSettings)


def test_defaults_fill_everything_but_the_backends():
    config = parse_config({"backends": [backend("a")]})
    assert config.policy.name == "auction"
    assert config.buyer_defaults.delta == 0.5
    spec = backend_specs(config)[0]
    assert spec.price_output == pytest.approx(4e-6) and spec.capacity == 4


def test_bad_capacity_names_its_index_and_field():
    msg = errors_of({"backends": [backend("a"), backend("b"), backend("c", capacity=0)]})
    assert msg.startswith("backends.2.capacity:") and "greater than or equal to 1" in msg


@pytest.mark.parametrize(("data", "where"), [
    ({"backends": []}, "backends:"),
    ({}, "backends:"),
    ({"backends": [backend("a", url="localhost:8000")]}, "backends.0.url:"),
    ({"backends": [backend("a", prices={"input": -1, "cached_input": 0, "output": 0})]},
     "backends.0.prices.input:"),
    ({"backends": [backend("a", prices={"input": 1, "output": 1})]}, "backends.0.prices.cached_input:"),
    ({"backends": [backend("a"), backend("a")]}, "repeats"),
    ({"backends": [backend("a", modle="x")]}, "backends.0.modle:"),
    ({"backends": [backend("a")], "batching": {"max_batch_size": 0}}, "batching.max_batch_size:"),
    ({"backends": [backend("a")], "batching": {"max_wait_ms": "soon"}}, "batching.max_wait_ms:"),
    ({"backends": [backend("a")], "policy": {"name": "cheapest"}}, "policy.name:"),
    ({"backends": [backend("a")], "buyer_defaults": {"delta": 1.5}}, "buyer_defaults.delta:"),
    ({"backends": [backend("a")], "buyer_defaults": {"bid": -1}}, "buyer_defaults.bid:"),
    ({"backends": [backend("a")], "server": {"port": 70000}}, "server.port:"),
    ({"backends": [backend("a")], "api_keys": {"short": "alice"}}, "api_keys:"),
    ({"backends": [backend("a", model="mercato")]}, "reserved"),
    ({"backends": [backend("a", api_key="k", api_key_env="K")]}, "backends.0:"),
    # exact KV state needs the engine's own tokenizer, named: none or an unknown one is refused
    ({"backends": [backend("a", kv_events={"endpoint": "tcp://127.0.0.1:5557"})]},
     "backends.0.kv_events.tokenizer:"),
    ({"backends": [backend("a", kv_events={"endpoint": "tcp://127.0.0.1:5557", "tokenizer": "Qwen/Qwen3"})]},
     "backends.0.kv_events.tokenizer:"),
    ([1, 2], "mapping"),
])
def test_invalid_configs_name_the_problem(data, where):
    assert where in errors_of(data)


def test_load_config_reports_yaml_and_file_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backends: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"backends": [backend("a", capacity=0)]}))
    with pytest.raises(ConfigError, match=r"backends\.0\.capacity"):
        load_config(good)


def test_api_key_from_environment(monkeypatch):
    config = parse_config({"backends": [backend("a", api_key_env="MERCATO_TEST_KEY")]})
    monkeypatch.setenv("MERCATO_TEST_KEY", "sk-secret")
    assert backend_specs(config)[0].api_key == "sk-secret"
    monkeypatch.delenv("MERCATO_TEST_KEY")
    with pytest.raises(ConfigError, match="MERCATO_TEST_KEY"):
        backend_specs(config)


def test_a_default_bid_is_bounded_like_a_reported_one():
    """A default bid the auction's values cannot hold finite is refused at load, naming the field."""
    assert "buyer_defaults.bid" in errors_of({"backends": [backend("a")], "buyer_defaults": {"bid": 1e300}})
    config = parse_config({"backends": [backend("a")], "buyer_defaults": {"bid": 1e9}})
    assert config.buyer_defaults.bid == 1e9
