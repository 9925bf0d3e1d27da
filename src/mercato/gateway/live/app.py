"""The live gateway as an ASGI app: the routed endpoints served directly, the rest by FastAPI.

Routes: ``POST /v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings`` (routed to
backends), ``GET /v1/models`` and ``/v1/models/{id}``, ``/health`` (the process is up),
``/ready`` (at least one backend answered its latest health check and has its breaker closed),
``/metrics`` (Prometheus) and ``/openapi.json``. Each route only maps HTTP onto
:mod:`mercato.gateway.live.service` and its answers back onto HTTP.

The routed endpoints bypass FastAPI's middleware stack, routing and request object: measured
under sequential load they cost about a tenth of the gateway's CPU per request, for features
(body limits, dependency injection, exception middleware) these routes do themselves. Their
responses are still Starlette response objects, so client disconnects during a stream are
handled there. Their request and response models (:mod:`mercato.gateway.live.openai_api`, the
same models that validate the bodies) are declared to FastAPI for the OpenAPI document only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from mercato.gateway.core.types import AUTO_MODEL, AccountingStore, RoutingCore
from mercato.gateway.live.config import GatewayConfig
from mercato.gateway.live.errors import APIError
from mercato.gateway.live.metrics import federate
from mercato.gateway.live.openai_api import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    ErrorResponse,
    Model,
    ModelList,
)
from mercato.gateway.live.service import Gateway, admit, complete, stream
from mercato.gateway.live.wire import CHAT, COMPLETIONS, EMBEDDINGS

log = logging.getLogger("mercato.gateway")
# path -> endpoint kind, for the endpoints routed to backends
ROUTED = {f"/v1/{kind}": kind for kind in (CHAT, COMPLETIONS, EMBEDDINGS)}
# What each error status means for a routed endpoint (documented in the OpenAPI document).
ROUTED_ERRORS = {
    400: "invalid body or parameter (param names it), or a prompt the backend refused",
    401: "API keys are enabled and the request has no valid one",
    402: "the buyer's budget cannot cover the request (code insufficient_quota): do not retry",
    404: "the model is not served here (code model_not_found)",
    405: "method other than POST",
    413: "body over server.max_body_bytes",
    422: "no backend can meet mercato.deadline_ms (code deadline_infeasible): do not retry as is",
    429: "queue full or held too long under overload, or the buyer over its rpm or tpm (code "
         "rate_limit_exceeded): retry after Retry-After seconds",
    502: "every backend failed, or the serving backend broke mid-stream",
    503: "no healthy backend serves the model: retry after Retry-After seconds",
}


class Readiness(BaseModel):
    """``GET /ready``: 200 when at least one backend's breaker is closed, else 503."""

    ready: bool
    healthy_backends: list[str]
    backends: int
    policy: str


class GatewayApp:
    """ASGI entry point: the routed endpoints directly, everything else through FastAPI."""

    def __init__(self, gateway: Gateway, api: FastAPI) -> None:
        self.gateway = gateway
        self.api = api

    @property
    def state(self) -> State:
        """The FastAPI app's state (``state.gateway`` is the running :class:`Gateway`)."""
        return self.api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = ROUTED.get(scope["path"]) if scope["type"] == "http" else None
        if kind is None:
            await self.api(scope, receive, send)
        elif scope["method"] != "POST":
            err = APIError(405, f"{scope['path']} accepts POST only", code="method_not_allowed",
                           headers={"allow": "POST"})
            self.gateway.observe(err.status, time.perf_counter(), error=err, kind=kind)
            await _error_response(err)(scope, receive, send)
        else:
            await self._serve(kind, scope, receive, send)

    async def _serve(self, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        gw = self.gateway
        try:
            request, dispatch = await admit(gw, kind, _headers(scope), _body(receive), t0)
            if request.stream:
                chunks, headers = await stream(gw, request, dispatch, t0)
                response: Response = StreamingResponse(chunks, media_type="text/event-stream",
                                                       headers=headers)
            else:
                body, headers = await complete(gw, request, dispatch, t0)
                response = Response(orjson.dumps(body), media_type="application/json", headers=headers)
        except APIError as err:
            response = _error_response(err)
        except Exception as err:
            log.exception("unexpected error", exc_info=err)
            internal = APIError(500, f"internal gateway error: {type(err).__name__}", code="internal_error")
            gw.observe(internal.status, t0, error=internal, kind=kind)
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


def _routed_declarations() -> APIRouter:
    """The routed endpoints as FastAPI would declare them: for the OpenAPI document only.

    :class:`GatewayApp` answers these paths before FastAPI sees them; the declarations give
    ``/openapi.json`` their request and response models, including the server-sent events.
    """
    router = APIRouter(tags=["routed to backends"])
    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorResponse, "description": meaning} for status, meaning in ROUTED_ERRORS.items()}

    def events(chunk: type[ChatCompletionChunk | Completion], what: str) -> dict[int | str, dict[str, Any]]:
        def json_data(model: type) -> dict[str, Any]:
            return {"type": "string", "contentMediaType": "application/json",
                    "contentSchema": {"$ref": f"#/components/schemas/{model.__name__}"}}

        # one server-sent event (OpenAPI 3.1: the schema of a stream describes each event)
        event = {"type": "object", "required": ["data"], "properties": {"data": {"anyOf": [
            json_data(chunk), {"const": "[DONE]"}, json_data(ErrorResponse)]}}}
        stream = {"description": f"{what}; with stream=true, server-sent events: chunks, then "
                                 "'[DONE]' (or an error object if the backend broke mid-stream)",
                  "content": {"text/event-stream": {"schema": event}}}
        return {200: stream, **errors}

    async def create_chat_completion(body: ChatCompletionRequest) -> ChatCompletion:
        """A chat completion from the backend the policy picks; ``mercato`` carries the buyer's report."""
        raise NotImplementedError  # declaration only, see above

    async def create_completion(body: CompletionRequest) -> Completion:
        """A text completion from the backend the policy picks."""
        raise NotImplementedError

    async def create_embedding(body: EmbeddingRequest) -> EmbeddingList:
        """Embeddings from a backend that serves the model (one vector per input)."""
        raise NotImplementedError

    router.add_api_route(f"/v1/{CHAT}", create_chat_completion, methods=["POST"],
                         responses=events(ChatCompletionChunk, "a chat.completion"))
    router.add_api_route(f"/v1/{COMPLETIONS}", create_completion, methods=["POST"],
                         responses=events(Completion, "a text_completion"))
    router.add_api_route(f"/v1/{EMBEDDINGS}", create_embedding, methods=["POST"], responses=errors)
    return router


def create_app(config: GatewayConfig, router: RoutingCore | None = None, *,
               store: AccountingStore | None = None) -> GatewayApp:
    """The gateway as an ASGI app; ``router`` defaults to a Router built from ``config``.

    The app writes one ledger record per served request into ``store`` (the caller keeps it open
    and closes it); without ``store`` it opens the store ``config.accounting.db`` names when it builds
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
    declared = _routed_declarations()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, routes=[*declared.routes, *app.routes],
                description="OpenAI-compatible gateway that routes each request by a truthful auction. "
                            "The 'mercato' body object is mercato's extension (see MercatoExtension).")
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

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

    created = int(time.time())

    def model_object(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": created, "owned_by": "mercato"}

    auth_error: dict[int | str, dict[str, Any]] = {401: {"model": ErrorResponse,
                                                         "description": "no valid API key"}}

    @app.get("/v1/models", response_model=ModelList, responses=auth_error)
    async def models(request: Request) -> dict[str, Any]:
        """``mercato`` (the auction's automatic choice) and the backends' models."""
        await gw.authenticate(request.headers)
        return {"object": "list", "data": [model_object(name) for name in [AUTO_MODEL, *gw.models]]}

    @app.get("/v1/models/{model_id:path}", response_model=Model, responses={
        **auth_error, 404: {"model": ErrorResponse, "description": "not served here"}})
    async def model(model_id: str, request: Request) -> dict[str, Any]:
        """One served model; 404 (code model_not_found) for any other id."""
        await gw.authenticate(request.headers)
        if model_id != AUTO_MODEL and model_id not in gw.models:
            raise APIError(404, f"model {model_id!r} is not served here", param="model",
                           code="model_not_found")
        return model_object(model_id)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", response_model=Readiness, responses={503: {"model": Readiness,
                                                                   "description": "no healthy backend"}})
    async def ready() -> JSONResponse:
        answering = gw.pool.answering()
        body = {"ready": bool(answering), "healthy_backends": answering,
                "backends": len(gw.pool.backends), "policy": gw.policy}
        return JSONResponse(body, status_code=200 if answering else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        gw.reporter.flush()  # every request finished so far is counted
        own = gw.metrics.render()
        sync = gw.replica_sync
        if sync is not None:  # replicas: this one's series and the others', each labelled
            own = federate({sync.name: own, **sync.peer_metrics})
        return Response(own, media_type=CONTENT_TYPE_LATEST)

    return GatewayApp(gw, app)
