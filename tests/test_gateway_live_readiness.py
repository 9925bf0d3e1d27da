"""/ready is false until a backend answers a health check, and false again once none does."""

from __future__ import annotations

import socket
import time

import httpx

from gateway_live_support import backend_entry, gateway
from mercato.engine import EngineCore, get_profile
from mercato.engine.server import create_app as create_engine_app
from mercato.engine.server import running_server
from mercato.gateway.live.backends import CircuitState
from mercato.gateway.live.config import parse_config
from mercato.ports import free_port


def wait_for_status(url: str, status: int, timeout_s: float = 5.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while (response := httpx.get(url)).status_code != status:
        assert time.monotonic() < deadline, f"{url} stayed {response.status_code}: {response.text}"
        time.sleep(0.02)
    return response


def test_ready_waits_for_a_backend_to_answer_and_follows_it_down(tmp_path):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    port = silent.getsockname()[1]
    refused = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = parse_config({
        "backends": [backend_entry("late", "qwen3-4b", f"http://127.0.0.1:{port}"),
                     backend_entry("dead", "qwen3-4b", refused)],
        "accounting": {"db": str(tmp_path / "l.sqlite")},
        "timeouts": {"connect_s": 0.5},
        # readiness alone: a start-up probe would wait its timeout at the backend that never answers
        "prefill_probe": {"enabled": False},
        "circuit_breaker": {"failure_threshold": 100, "cooldown_s": 0.1, "health_interval_s": 0.1}})
    with gateway(config) as (url, gw):
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}  # liveness: the process is up
        deadline = time.monotonic() + 5.0  # refused at its first check: never worked, opened at once
        while gw.pool["dead"].breaker.state is not CircuitState.OPEN:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        down = httpx.get(f"{url}/ready")
        assert down.status_code == 503 and down.json()["healthy_backends"] == []
        assert gw.pool.healthy() == ["late"]  # its breaker is closed, but it has not answered yet

        silent.close()
        engine = create_engine_app(EngineCore(get_profile("qwen3-4b"), max_num_seqs=4), "qwen3-4b")
        with running_server(engine, port=port):
            up = wait_for_status(f"{url}/ready", 200)
            assert up.json() == {"ready": True, "healthy_backends": ["late"], "backends": 2,
                                 "policy": "auction"}
        # gone again: the next check takes readiness away, long before 100 failures open its breaker
        assert wait_for_status(f"{url}/ready", 503, timeout_s=3.0).json()["healthy_backends"] == []
        assert gw.pool["late"].breaker.state is CircuitState.CLOSED
        assert httpx.get(f"{url}/health").status_code == 200
