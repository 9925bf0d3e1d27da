"""The live gateway: a thin FastAPI app around the framework-free request service.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``/health`` (the process is up),
``/ready`` (at least one backend's breaker is closed), ``/metrics`` (Prometheus). Each route
only maps HTTP onto :mod:`mercato.gateway.live.service` and its answers back onto HTTP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from mercato.gateway.core.types import AUTO_MODEL, AccountingStore, RoutingCore
from mercato.gateway.live.config import GatewayConfig
from mercato.gateway.live.errors import APIError
from mercato.gateway.live.service import Gateway, admit, complete, stream

log = logging.getLogger("mercato.gateway")


def create_app(config: GatewayConfig, router: RoutingCore | None = None, *,
               store: AccountingStore | None = None) -> FastAPI:
    """The gateway as an ASGI app; ``router`` defaults to a Router built from ``config``.

    The app writes one ledger record per served request into ``store`` (the caller keeps it open
    and closes it); without ``store`` it opens SQLite at ``config.accounting.db`` when it builds
    the router itself, and writes nothing when the caller brought a router (which then accounts
    for itself, e.g. through the store it was given).
    """
    gw = Gateway(config, router, store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(title="mercato gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gw

    @app.exception_handler(APIError)
    async def _api_error(_: Request, err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        api = APIError(err.status_code, str(err.detail), code="not_found" if err.status_code == 404 else None)
        return JSONResponse(api.body(), status_code=err.status_code, headers=dict(err.headers or {}))

    @app.exception_handler(Exception)
    async def _internal(_: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=err)
        api = APIError(500, f"internal gateway error: {type(err).__name__}", code="internal_error")
        return JSONResponse(api.body(), status_code=500)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        t0 = time.perf_counter()
        chat, dispatch = await admit(gw, request.headers, request.stream(), t0)
        if chat.stream:
            chunks, headers = await stream(gw, chat, dispatch, t0)
            return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
        body, headers = await complete(gw, chat, dispatch, t0)
        return JSONResponse(body, headers=headers)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        gw.authenticate(request.headers)
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "mercato"}
            for name in [AUTO_MODEL, *gw.models]]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        healthy = gw.pool.healthy()
        body = {"ready": bool(healthy), "healthy_backends": healthy,
                "backends": len(gw.pool.backends), "policy": gw.policy}
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(gw.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
