"""Run the gateway with uvicorn in the foreground (what ``mercato serve --config FILE`` does).

One process, one event loop: the Router core is single-threaded by design, so a deployment
scales by running gateway replicas behind a load balancer rather than uvicorn workers.
In-process servers for tests and demos use :func:`mercato.engine.server.running_server`.
"""

from __future__ import annotations

import sys

import uvicorn

from mercato.gateway.live.app import create_app
from mercato.gateway.live.config import GatewayConfig
from mercato.gateway.live.startup import render_summary, startup_summary
from mercato.heap import freeze_startup_objects, retain_freed_memory


def serve(config: GatewayConfig, host: str | None = None, port: int | None = None) -> None:
    """Serve the gateway described by ``config`` until interrupted; host/port override the file.

    Prints the start-up summary to the standard error first; uvicorn's own access log is off,
    since the gateway writes its own (:mod:`mercato.gateway.live.access_log`).
    """
    retain_freed_memory()
    app = create_app(config)
    host = host or config.server.host
    port = config.server.port if port is None else port
    summary = startup_summary(config, app.gateway.policy, host, port)
    print(render_summary(summary, config.logging.format), file=sys.stderr, flush=True)
    freeze_startup_objects()
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
