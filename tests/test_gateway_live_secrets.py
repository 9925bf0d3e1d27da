"""Secrets from the environment in the config file: expanded at load, named when missing, never printed."""

from __future__ import annotations

import pytest
import yaml

from mercato.gateway.live.config import ConfigError, load_config, parse_config
from mercato.gateway.live.startup import render_summary, startup_summary

BACKEND = {"name": "a", "url": "http://127.0.0.1:1/v1", "model": "m",
           "prices": {"input": 1.0, "cached_input": 0.5, "output": 2.0}}


def test_references_expand_anywhere_in_strings_and_keys(monkeypatch, tmp_path):
    monkeypatch.setenv("BACKEND_KEY", "sk-backend-secret")
    monkeypatch.setenv("ALICE_KEY", "sk-alice-secret-1")
    monkeypatch.setenv("REDIS_PASSWORD", "hunter2")
    monkeypatch.setenv("DB_DIR", str(tmp_path))
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump({
        "backends": [BACKEND | {"api_key": "os.environ/BACKEND_KEY"}],
        "api_keys": {"${ALICE_KEY}": "alice", "sk-literal-$${ALICE_KEY}": "bob"},
        "state": {"redis_url": "redis://:${REDIS_PASSWORD}@127.0.0.1:6379/0"},
        "accounting": {"db": "${DB_DIR}/ledger.sqlite"}}))
    config = load_config(tmp_path / "gw.yaml")
    assert config.backends[0].api_key == "sk-backend-secret"
    assert config.api_keys == {"sk-alice-secret-1": "alice", "sk-literal-${ALICE_KEY}": "bob"}
    assert config.state.redis_url == "redis://:hunter2@127.0.0.1:6379/0"
    assert config.accounting.db == tmp_path / "ledger.sqlite"
    text = render_summary(startup_summary(config, "auction", "127.0.0.1", 8000), "text")
    assert "redis://***@127.0.0.1:6379/0" in text
    assert "hunter2" not in text and "sk-" not in text
    # a parsed configuration is not expanded again (a worker reads its parent's resolved one)
    again = parse_config(config.model_dump(mode="json"))
    assert again.api_keys == config.api_keys


@pytest.mark.parametrize(("data", "message"), [
    ({"backends": [BACKEND | {"api_key": "${NOPE_UNSET}"}]},
     "backends.0.api_key: environment variable NOPE_UNSET is not set"),
    ({"backends": [BACKEND], "state": {"redis_url": "os.environ/NOPE_UNSET"}},
     "state.redis_url: environment variable NOPE_UNSET is not set"),
    ({"backends": [BACKEND], "api_keys": {"${NOPE_UNSET}": "alice"}},
     "api_keys.${NOPE_UNSET}: environment variable NOPE_UNSET is not set"),
    ({"backends": [BACKEND | {"api_key": "${not a name}"}]},
     "backends.0.api_key: environment variable 'not a name' is not a valid variable name"),
])
def test_an_unset_variable_names_the_field_and_the_variable(monkeypatch, tmp_path, data, message):
    monkeypatch.delenv("NOPE_UNSET", raising=False)
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "gw.yaml")
    assert str(info.value) == f"{tmp_path / 'gw.yaml'}: {message}"

