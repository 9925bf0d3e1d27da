"""`mercato serve` prints its start-up summary once, in the access log's format."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import yaml

from gateway_live_support import backend_entry, engines
from mercato.gateway.live.config import parse_config
from mercato.gateway.live.fleet import stop_process, wait_ready
from mercato.gateway.live.startup import render_summary, startup_summary
from mercato.ports import free_port


def test_mercato_serve_prints_the_summary_once_then_logs_each_request(tmp_path):
    with engines(speed=20.0, cluster={"small": "qwen3-4b"}) as urls:
        config = {"backends": [backend_entry("small", "qwen3-4b", urls["small"])],
                  "accounting": {"db": str(tmp_path / "l.sqlite")}}
        (tmp_path / "gw.yaml").write_text(yaml.safe_dump(config))
        port = free_port()
        command = [sys.executable, "-m", "mercato", "serve", "--config", str(tmp_path / "gw.yaml"),
                   "--port", str(port)]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_ready(proc, f"http://127.0.0.1:{port}/ready", 30.0, "gateway")
            reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30, json={
                "model": "mercato", "messages": [{"role": "user", "content": "Hi?"}], "max_tokens": 4})
            proc.terminate()
            _, err = proc.communicate(timeout=15)
        finally:
            stop_process(proc)
    lines = err.decode().splitlines()
    assert lines[0] == (f"mercato gateway on http://127.0.0.1:{port}: policy auction (seed 0, "
                        "congestion pricing on)")
    assert sum(line.startswith("mercato gateway on ") for line in lines) == 1
    assert f"    small: model qwen3-4b at {urls['small']}/v1, capacity 4, 0.03 / 0.015 / 0.1" in lines
    access = [line for line in lines if line.startswith("ts=")]
    assert len(access) == 1 and f"request_id={reply.headers['x-mercato-request-id']} " in access[0]
    assert " status=200 " in access[0] and " backend=small " in access[0]


def test_summary_names_address_policy_backends_prices_batching_ledger_and_kv_events(tmp_path):
    config = parse_config({
        "backends": [backend_entry("small", "qwen3-4b", "http://127.0.0.1:8001"),
                     backend_entry("big", "qwen3-8b", "http://127.0.0.1:8002")
                     | {"kv_events": {"endpoint": "tcp://127.0.0.1:5557", "tokenizer": "mercato"}}],
        "accounting": {"db": str(tmp_path / "l.sqlite")}, "policy": {"name": "auction", "seed": 3},
        "logging": {"format": "json"}})
    summary = startup_summary(config, "auction", "0.0.0.0", 8000)
    text = render_summary(summary, "text")
    assert text.splitlines()[0] == ("mercato gateway on http://0.0.0.0:8000: policy auction (seed 3, "
                                    "congestion pricing on)")
    assert "    small: model qwen3-4b at http://127.0.0.1:8001/v1, capacity 4, 0.03 / 0.015 / 0.1" in text
    assert "kv events tcp://127.0.0.1:5557" in text and "followed for 1 of 2 backends" in text
    assert "up to 16 per batch, 10 ms after the first" in text and str(tmp_path / "l.sqlite") in text
    assert "access log: json to stderr" in text
    assert ("  prefill probes: 2 cold prompt(s) of 32 and 1024 words at each backend before serving "
            "(at most 10 s)") in text.splitlines()
    off = parse_config(config.model_dump(mode="json") | {"prefill_probe": {"enabled": False}})
    assert "  prefill probes: off" in render_summary(startup_summary(off, "auction", "::", 1), "text")
    line = render_summary(summary, "json")
    assert "\n" not in line and json.loads(line)["backends"][1]["kv_events"] == "tcp://127.0.0.1:5557"
