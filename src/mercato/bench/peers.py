"""Routers to compare against, started by the bench itself on 127.0.0.1.

Every router runs as a child process, mercato's own gateway (``mercato serve``) as much as the
peers, so that none shares an interpreter, and its lock, with the load generator. The peers come
from the optional ``peers`` dependency group (``pip install -e '.[peers]'``): the real
``sglang-router`` (Rust, from the package registry). A peer that is not installed is skipped and
the report says so; nothing in the test suite needs one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from mercato.gateway.live.config import AccountingConfig, GatewayConfig, PolicyConfig, ServerConfig
from mercato.gateway.live.fleet import EngineFleet, stop_process, wait_ready
from mercato.gateway.live.ledger import remove_ledger
from mercato.ports import free_port

SGLANG_POLICIES = ("cache_aware", "round_robin")


def sglang_available() -> bool:
    """True when the ``sglang_router`` package of the ``peers`` group is installed."""
    return importlib.util.find_spec("sglang_router") is not None


@contextlib.contextmanager
def mercato_router(fleet: EngineFleet, policy: str, ledger: Path, seed: int,
                   kv_events: bool = True) -> Iterator[str]:
    """mercato's gateway in front of ``fleet`` with ``policy``; yields its base URL.

    ``kv_events``: follow the KV events of engines that publish them (False: the prefix ledger only).
    """
    remove_ledger(ledger)
    config = GatewayConfig(backends=fleet.backend_configs(kv_events=kv_events),
                           policy=PolicyConfig(name=policy, seed=seed),
                           accounting=AccountingConfig(db=ledger))
    with mercato_process(config, ledger.with_suffix(".yaml")) as (url, _):
        yield url


@contextlib.contextmanager
def mercato_process(config: GatewayConfig, path: Path, gateway_src: Path | None = None,
                    timeout_s: float = 60.0, workers: int = 1
                    ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``mercato serve`` with ``config`` on a free local port, written to ``path`` (its log beside it).

    Yields the base URL and the process once ``/ready`` answers. ``gateway_src`` runs another
    checkout's ``src`` folder instead of this one (to compare against an older commit);
    ``workers``: ``--workers``.
    """
    port = free_port()
    served = config.model_copy(update={"server": ServerConfig(host="127.0.0.1", port=port,
                                                              max_body_bytes=config.server.max_body_bytes)})
    # only what differs from the defaults: an older checkout (gateway_src) may not know newer fields
    path.write_text(yaml.safe_dump(served.model_dump(mode="json", exclude_defaults=True)))
    env = None
    if gateway_src is not None:
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(gateway_src),
                                                                         os.environ.get("PYTHONPATH")]))}
    url = f"http://127.0.0.1:{port}"
    log = path.with_suffix(".log")
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mercato", "serve", "--config", str(path),
                                 *(["--workers", str(workers)] if workers > 1 else [])], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(proc, f"{url}/ready", timeout_s, f"`mercato serve` (log: {log})")
        yield url, proc
    finally:
        stop_process(proc, timeout_s=15)


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
        wait_ready(proc, f"{url}/v1/models", timeout_s, "sglang-router")  # its workers are registered
        yield url, proc
    finally:
        stop_process(proc)


