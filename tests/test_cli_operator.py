"""The commands an operator runs by hand: engine serve with no flags, serve --backend, fleet up/down,
loadgen's exit status and one-line config errors (real servers on free loopback ports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from gateway_live_support import engines
from mercato.cli import app
from mercato.cli.engine import DEFAULT_PORT, DEFAULT_PROFILE
from mercato.engine import EngineCore, get_profile
from mercato.engine.server import create_app as create_engine_app
from mercato.engine.server import running_server
from mercato.gateway.live.config import ConfigError, ServerConfig, load_config
from mercato.gateway.live.discovery import discover_config
from mercato.gateway.live.fleet import stop_process, wait_ready
from mercato.ports import free_port

runner = CliRunner()
MERCATO = [sys.executable, "-m", "mercato"]


def test_engine_serve_answers_with_no_flags_on_a_port_that_is_not_the_gateways():
    assert ServerConfig().port != DEFAULT_PORT
    port = free_port()  # the default port may be taken by another run: the env var moves it
    proc = subprocess.Popen([*MERCATO, "engine", "serve"],
                            env=os.environ | {"MERCATO_ENGINE_PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/health", 30.0, "engine")
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]
        assert [m["id"] for m in models] == [DEFAULT_PROFILE]
    finally:
        stop_process(proc)


def test_serve_with_backend_urls_routes_to_a_real_engine(tmp_path):
    with engines(cluster={"small": "qwen3-4b", "large": "qwen3-32b"}) as urls:
        port = free_port()
        proc = subprocess.Popen([*MERCATO, "serve", "--backend", urls["small"],
                                 "--backend", f"{urls['large']}/v1/", "--port", str(port)], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            gateway = f"http://127.0.0.1:{port}"
            wait_ready(proc, f"{gateway}/ready", 30.0, "gateway")
            listed = {m["id"] for m in httpx.get(f"{gateway}/v1/models").json()["data"]}
            assert {"qwen3-4b", "qwen3-32b"} <= listed
            reply = httpx.post(f"{gateway}/v1/chat/completions", timeout=30, json={
                "model": "mercato", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi?"}]})
            assert reply.status_code == 200
            names = {url.removeprefix("http://") for url in urls.values()}
            assert reply.json()["mercato"]["backend"] in names
        finally:
            stop_process(proc)
    assert (tmp_path / "mercato-ledger.sqlite").exists()


def test_backend_urls_are_priced_from_the_profile_their_model_names():
    small, other = EngineCore(get_profile("qwen3-4b"), seed=0), EngineCore(get_profile("qwen3-8b"), seed=1)
    with running_server(create_engine_app(small, "qwen3-4b")) as known, \
            running_server(create_engine_app(other, "my-finetune")) as unknown:
        config = discover_config([known, f"{unknown}/v1#my-finetune"], capacity=3)
        by_model = {b.model: b for b in config.backends}
        assert by_model["qwen3-4b"].prices.output == get_profile("qwen3-4b").price_output
        assert by_model["qwen3-4b"].profile == "qwen3-4b" and by_model["qwen3-4b"].capacity == 3
        assert by_model["my-finetune"].prices.output == 0.0 and by_model["my-finetune"].profile is None
        with pytest.raises(ConfigError, match="lists my-finetune, not qwen3-8b"):
            discover_config([f"{unknown}#qwen3-8b"])
        with pytest.raises(ConfigError, match="given more than once"):
            discover_config([known, f"{known}/v1"])
    with pytest.raises(ConfigError, match="cannot list its models"):
        discover_config([known])  # stopped now


def pids_gone(pids: list[int], timeout_s: float = 10.0) -> bool:
    """Whether every pid has exited (zombies waiting for init to reap them count as exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists()
                 and Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()[0] != "Z"]
        if not alive:
            return True
        time.sleep(0.05)
    return False


def test_fleet_up_writes_a_config_serve_loads_and_down_leaves_no_process(tmp_path):
    folder = tmp_path / "fleet"
    up = subprocess.run([*MERCATO, "fleet", "up", "--profiles", "qwen3-4b,qwen3-8b", "--dir", str(folder)],
                        capture_output=True, text=True, timeout=120)
    pids: list[int] = []
    try:
        assert up.returncode == 0, up.stderr
        pids = [e["pid"] for e in json.loads((folder / "fleet.json").read_text())["engines"]]
        config = load_config(folder / "gateway.yaml")
        assert [b.model for b in config.backends] == ["qwen3-4b", "qwen3-8b"]
        for backend in config.backends:
            assert backend.url in up.stdout
            assert httpx.get(f"{backend.url}/models").status_code == 200
        again = runner.invoke(app, ["fleet", "up", "--dir", str(folder)])
        assert again.exit_code == 2 and "already up" in again.stderr
    finally:
        down = subprocess.run([*MERCATO, "fleet", "down", "--dir", str(folder)],
                              capture_output=True, text=True)
    assert down.returncode == 0 and "stopped 2 engine(s)" in down.stdout
    assert pids and pids_gone(pids)
    assert not folder.exists()


def test_loadgen_exits_non_zero_when_requests_fail(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    common = ["--dialogues", "1", "--turns", "2", "--model", "qwen3-4b", "--out", str(tmp_path / "r.jsonl")]
    failed = runner.invoke(app, ["loadgen", "--url", dead, *common])
    # a failed turn ends its dialogue: one request, one failure
    assert failed.exit_code == 1 and "1 of 1 requests failed" in failed.output
    tolerated = runner.invoke(app, ["loadgen", "--url", dead, "--max-error-rate", "1", *common])
    assert tolerated.exit_code == 0
    with engines(cluster={"small": "qwen3-4b"}) as urls:
        served = runner.invoke(app, ["loadgen", "--url", urls["small"], "--json", *common])
    assert served.exit_code == 0 and json.loads(served.stdout)["errors"] == 0


def good_backend(**extra: object) -> dict[str, object]:
    return {"name": "a", "url": "http://127.0.0.1:1/v1", "model": "m",
            "prices": {"input": 1, "cached_input": 0, "output": 1}} | extra


@pytest.mark.parametrize(("text", "field"), [
    (yaml.safe_dump({"backends": [good_backend(api_key_env="MERCATO_TEST_UNSET_KEY")]}),
     "backends.a.api_key_env: environment variable MERCATO_TEST_UNSET_KEY is not set"),
    (yaml.safe_dump({"backends": [good_backend(capcity=2)]}), "backends.0.capcity: unknown field"),
    (yaml.safe_dump({"backends": [good_backend(url="127.0.0.1:8001")]}), "backends.0.url: must be an http://"),
    (yaml.safe_dump({"server": {"port": 8000}}), "backends: Field required"),
    ("backends:\n  - name: a\n url: x\n", "gateway.yaml:3:2: invalid YAML"),
    (None, "gateway.yaml: cannot read"),
])
def test_a_config_mistake_is_one_line_naming_the_field(tmp_path, monkeypatch, text, field):
    monkeypatch.delenv("MERCATO_TEST_UNSET_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # a config that passes validation would open its ledger here
    if text is not None:
        Path("gateway.yaml").write_text(text)
    result = runner.invoke(app, ["serve", "--config", "gateway.yaml"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert field in result.stderr


def test_fleet_up_that_fails_says_why_and_leaves_nothing(tmp_path):
    folder = tmp_path / "fleet"
    up = runner.invoke(app, ["fleet", "up", "--profiles", "qwen3-4b", "--speed", "-1", "--dir", str(folder)])
    assert up.exit_code == 2
    assert up.stderr.count("\n") == 1 and "speed must be >= 0" in up.stderr
    assert not folder.exists()
