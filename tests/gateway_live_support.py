"""Live servers for the gateway tests: simulated engines and gateways on 127.0.0.1, free ports."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from mercato.engine import EngineCore, get_profile
from mercato.engine.server import create_app as create_engine_app
from mercato.engine.server import running_server
from mercato.gateway.live.app import Gateway, create_app
from mercato.gateway.live.config import GatewayConfig, parse_config

# name -> simulated model profile: four backends, three profiles, three price levels
CLUSTER = {"small-1": "qwen3-4b", "small-2": "qwen3-4b", "medium": "qwen3-8b", "large": "qwen3-32b"}


def backend_entry(name: str, profile: str, url: str, capacity: int = 4) -> dict[str, Any]:
    p = get_profile(profile)
    prices = {"input": p.price_input, "cached_input": p.price_cached_input, "output": p.price_output}
    return {"name": name, "url": f"{url}/v1", "model": profile, "capacity": capacity, "profile": profile,
            "prices": prices}


@contextmanager
def engines(speed: float = 20.0, cluster: dict[str, str] = CLUSTER) -> Iterator[dict[str, str]]:
    """In-thread simulated engines; yields name -> base URL (without /v1)."""
    with ExitStack() as stack:
        urls = {}
        for seed, (name, profile) in enumerate(cluster.items()):
            core = EngineCore(get_profile(profile), max_num_seqs=8, seed=seed)
            urls[name] = stack.enter_context(running_server(create_engine_app(core, profile, speed=speed)))
        yield urls


def config_for(urls: dict[str, str], db: Path, cluster: dict[str, str] = CLUSTER, **sections: Any
               ) -> GatewayConfig:
    data = {"backends": [backend_entry(n, cluster[n], u) for n, u in urls.items()],
            "accounting": {"db": str(db)}} | sections
    return parse_config(data)


@contextmanager
def gateway(config: GatewayConfig) -> Iterator[tuple[str, Gateway]]:
    """A live gateway on a free port; yields (base URL, the Gateway object)."""
    app = create_app(config)
    with running_server(app) as url:
        yield url, app.state.gateway


def ledger_rows(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM ledger")]
    conn.close()
    return rows
