"""The live gateway as an ASGI app: the hot endpoint served directly, the rest by FastAPI.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``/health`` (the process is up),
``/ready`` (at least one backend answered its latest health check and has its breaker closed),
``/metrics`` (Prometheus). Each route only maps HTTP onto :mod:`mercato.gateway.live.service`
and its answers back onto HTTP.

Chat completions bypass FastAPI's middleware stack, routing and request object: measured under
sequential load they cost about a tenth of the gateway's CPU per request, for features (body
limits, dependency injection, exception middleware) this one route does itself. Its responses
are still Starlette response objects, so client disconnects during a stream are handled there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from mercato.gateway.core.types import AUTO_MODEL, AccountingStore, RoutingCore
from mercato.gateway.live.config import GatewayConfig
from mercato.gateway.live.errors import APIError
from mercato.gateway.live.service import Gateway, admit, complete, stream

log = logging.getLogger("mercato.gateway")
CHAT_PATH = "/v1/chat/completions"


class GatewayApp:
    """ASGI entry point: ``POST /v1/chat/completions`` directly, everything else through FastAPI."""

    def __init__(self, gateway: Gateway, api: FastAPI) -> None:
        self.gateway = gateway
        self.api = api

    @property
    def state(self) -> State:
        """The FastAPI app's state (``state.gateway`` is the running :class:`Gateway`)."""
        return self.api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CHAT_PATH:
            await self.api(scope, receive, send)
        elif scope["method"] != "POST":
            err = APIError(405, f"{CHAT_PATH} accepts POST only", code="method_not_allowed",
                           headers={"allow": "POST"})
            self.gateway.observe(err.status, time.perf_counter(), error=err)
            await _error_response(err)(scope, receive, send)
        else:
            await self._chat(scope, receive, send)

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        gw = self.gateway
        try:
            chat, dispatch = await admit(gw, _headers(scope), _body(receive), t0)
            if chat.stream:
                chunks, headers = await stream(gw, chat, dispatch, t0)
                response: Response = StreamingResponse(chunks, media_type="text/event-stream",
                                                       headers=headers)
            else:
                body, headers = await complete(gw, chat, dispatch, t0)
                response = Response(orjson.dumps(body), media_type="application/json", headers=headers)
        except APIError as err:
            response = _error_response(err)
        except Exception as err:
            log.exception("unexpected error", exc_info=err)
            internal = APIError(500, f"internal gateway error: {type(err).__name__}", code="internal_error")
            gw.observe(internal.status, t0, error=internal)
            response = _error_response(internal)
        await response(scope, receive, send)


def _headers(scope: Scope) -> Mapping[str, str]:
    """Request headers by lower-case name; the first of repeated headers wins."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as it arrives; a client that disconnects ends it early."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if chunk := message.get("body", b""):
            yield chunk
        if not message.get("more_body", False):
            return


def _error_response(err: APIError) -> Response:
    return Response(orjson.dumps(err.body()), status_code=err.status, media_type="application/json",
                    headers=err.headers)


def create_app(config: GatewayConfig, router: RoutingCore | None = None, *,
               store: AccountingStore | None = None) -> GatewayApp:
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
    async def _api_error(_: Request, err: APIError) -> Response:
        return _error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, err: StarletteHTTPException) -> Response:
        api = APIError(err.status_code, str(err.detail), code="not_found" if err.status_code == 404 else None,
                       headers=dict(err.headers or {}))
        return _error_response(api)

    @app.exception_handler(Exception)
    async def _internal(_: Request, err: Exception) -> Response:
        log.exception("unexpected error", exc_info=err)
        return _error_response(APIError(500, f"internal gateway error: {type(err).__name__}",
                                        code="internal_error"))

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
        answering = gw.pool.answering()
        body = {"ready": bool(answering), "healthy_backends": answering,
                "backends": len(gw.pool.backends), "policy": gw.policy}
        return JSONResponse(body, status_code=200 if answering else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        gw.reporter.flush()  # every request finished so far is counted
        return Response(gw.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return GatewayApp(gw, app)
