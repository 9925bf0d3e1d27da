"""The embedded Redis the gateway starts for replicas: it runs, restarts empty, and refuses bad URLs."""

from __future__ import annotations

import pytest
import redis

from mercato.gateway.live.config import ConfigError, parse_config
from mercato.gateway.live.embedded_redis import embedded_redis

BACKEND = {"name": "a", "url": "http://127.0.0.1:1", "model": "m",
           "prices": {"input": 1.0, "cached_input": 0.5, "output": 2.0}}


def test_embedded_redis_serves_and_restarts_empty() -> None:
    with embedded_redis() as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        server.stop()
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        server.start()
        assert client.get("k") is None  # no persistence: replicas rebuild their state
        client.close()
    assert server.process is None


def test_state_section_accepts_redis_urls_only() -> None:
    cfg = parse_config({"backends": [BACKEND], "state": {"redis_url": "redis://127.0.0.1:6379/0"}})
    assert cfg.state.redis_url == "redis://127.0.0.1:6379/0"
    assert parse_config({"backends": [BACKEND]}).state.redis_url is None
    with pytest.raises(ConfigError, match=r"state\.redis_url: must be a redis://"):
        parse_config({"backends": [BACKEND], "state": {"redis_url": "http://x"}})
