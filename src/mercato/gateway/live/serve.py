"""Run the gateway with uvicorn in the foreground (what ``mercato serve --config FILE`` does).

One worker is one process and one event loop: the Router core is single-threaded by design.
``--workers N`` runs N such replicas behind one port. uvicorn's supervisor binds the listening
socket once in the parent and hands it to every worker, so the kernel gives each new connection
to whichever worker accepts first (an idle worker wins, a busy one falls behind); it also restarts
a worker that dies and stops them all on SIGINT or SIGTERM. The replicas share load, prefix
state, budgets and limits through Redis (``state.redis_url``) and write one ledger; without a
Redis URL the parent starts an embedded Redis, and without a PostgreSQL ``accounting.db`` an
embedded PostgreSQL whose cluster stays beside the SQLite file the config names (``.pgdata``),
first, and stops them last. Workers read the validated configuration from a file
the parent writes into a private temporary directory (mode 0600: it holds the resolved secrets).
In-process servers for tests and demos use :func:`mercato.engine.server.running_server`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import orjson
import uvicorn

from mercato.gateway.live.app import GatewayApp, create_app
from mercato.gateway.live.assemble import build_router
from mercato.gateway.live.config import GatewayConfig, parse_config
from mercato.gateway.live.embedded_postgres import embedded_postgres
from mercato.gateway.live.embedded_redis import embedded_redis
from mercato.gateway.live.startup import render_summary, startup_summary
from mercato.heap import freeze_startup_objects, retain_freed_memory

WORKER_CONFIG_ENV = "MERCATO_WORKER_CONFIG"  # where a worker finds the parent's configuration


def serve(config: GatewayConfig, host: str | None = None, port: int | None = None, workers: int = 1) -> None:
    """Serve the gateway described by ``config`` until interrupted; host/port override the file.

    Prints the start-up summary to the standard error first; uvicorn's own access log is off,
    since the gateway writes its own (:mod:`mercato.gateway.live.access_log`).
    """
    host = host or config.server.host
    port = config.server.port if port is None else port
    if workers == 1:
        app = _built(config)
        summary = startup_summary(config, app.gateway.policy, host, port)
        print(render_summary(summary, config.logging.format), file=sys.stderr, flush=True)
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
        return
    build_router(config)  # fail here, once, on what every worker would fail on (keys, hubs)
    with ExitStack() as stack:
        if config.state.redis_url is None:
            redis = stack.enter_context(embedded_redis())
            state = config.state.model_copy(update={"redis_url": redis.url})
            config = config.model_copy(update={"state": state})
        if isinstance(config.accounting.db, Path):  # one SQLite writer would serialise the replicas
            folder = config.accounting.db.with_suffix(".pgdata")
            postgres = stack.enter_context(embedded_postgres(folder))
            update: dict[str, object] = {"db": postgres.url}
            if "spool" not in config.accounting.model_fields_set:  # beside the ledger, not in the cwd
                update["spool"] = config.accounting.db.with_name(f"{config.accounting.db.stem}-spool.sqlite")
            accounting = config.accounting.model_copy(update=update)
            config = config.model_copy(update={"accounting": accounting})
            print(f"ledger: embedded PostgreSQL in {folder} (read it with: mercato ledger summary --db "
                  f"{folder})", file=sys.stderr, flush=True)
        # each worker enforces its 1/N of the buyers' limits while Redis is unreachable
        limits = config.limits.model_copy(update={"replicas": max(config.limits.replicas, workers)})
        config = config.model_copy(update={"limits": limits})
        private = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mercato-serve-")))
        path = private / "config.json"
        path.touch(mode=0o600)
        path.write_bytes(orjson.dumps(config.model_dump(mode="json")))
        os.environ[WORKER_CONFIG_ENV] = str(path)
        summary = startup_summary(config, config.policy.name, host, port, workers=workers)
        print(render_summary(summary, config.logging.format), file=sys.stderr, flush=True)
        uvicorn.run(f"{__name__}:worker_app", factory=True, host=host, port=port, workers=workers,
                    log_level="info", access_log=False)


def worker_app() -> GatewayApp:
    """One worker's app, from the configuration its parent wrote (uvicorn's app factory)."""
    return _built(parse_config(orjson.loads(Path(os.environ[WORKER_CONFIG_ENV]).read_bytes())))


def _built(config: GatewayConfig) -> GatewayApp:
    """The app of one gateway process, its start-up objects then exempt from garbage collection."""
    retain_freed_memory()
    app = create_app(config)
    freeze_startup_objects()
    return app
