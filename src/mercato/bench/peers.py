"""Routers to compare against, started by the bench itself on 127.0.0.1.

mercato's own gateway runs in-process (its app in a uvicorn thread); the peers run as child
processes from the optional ``peers`` dependency group (``pip install -e '.[peers]'``): the real
``sglang-router`` (Rust, from the package registry). A peer that is not installed is skipped and
the report says so; nothing in the test suite needs one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from mercato.engine.server import running_server
from mercato.gateway.live.app import create_app
from mercato.gateway.live.config import AccountingConfig, GatewayConfig, PolicyConfig
from mercato.gateway.live.fleet import EngineFleet, free_port, stop_process
from mercato.gateway.live.ledger import remove_ledger

SGLANG_POLICIES = ("cache_aware", "round_robin")


def sglang_available() -> bool:
    """True when the ``sglang_router`` package of the ``peers`` group is installed."""
    return importlib.util.find_spec("sglang_router") is not None


@contextlib.contextmanager
def mercato_router(fleet: EngineFleet, policy: str, ledger: Path, seed: int) -> Iterator[str]:
    """mercato's gateway in front of ``fleet`` with ``policy``; yields its base URL."""
    remove_ledger(ledger)
    config = GatewayConfig(backends=fleet.backend_configs(), policy=PolicyConfig(name=policy, seed=seed),
                           accounting=AccountingConfig(db=ledger))
    with running_server(create_app(config)) as url:
        yield url


@contextlib.contextmanager
def sglang_router(fleet: EngineFleet, policy: str, timeout_s: float = 60.0) -> Iterator[str]:
    """The real sglang-router (``--policy``) in front of ``fleet``; yields its base URL."""
    with sglang_router_process(fleet, policy, timeout_s) as (url, _):
        yield url


@contextlib.contextmanager
def sglang_router_process(fleet: EngineFleet, policy: str,
                          timeout_s: float = 60.0) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As :func:`sglang_router`, and its process too (to measure its memory and CPU)."""
    port = free_port()
    workers = [e.url.removesuffix("/v1") for e in fleet.engines]
    cmd = [sys.executable, "-m", "sglang_router.launch_router", "--host", "127.0.0.1", "--port", str(port),
           "--policy", policy, "--worker-urls", *workers]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url, timeout_s)
        yield url, proc
    finally:
        stop_process(proc)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    """Until the router lists the fleet's model (its workers are registered)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"sglang-router exited with {proc.returncode}: {err[-500:]}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{url}/v1/models").status_code == 200:
                    return
            time.sleep(0.2)
    raise RuntimeError(f"sglang-router did not become ready in {timeout_s:.0f} s")
