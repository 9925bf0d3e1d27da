"""The simulated engine as an OpenAI-compatible HTTP server (what ``mercato engine serve`` runs).

``create_app(core, model_name)`` wraps one :class:`EngineCore` in a FastAPI app with vLLM's
endpoints: ``POST /v1/chat/completions`` (streaming and not), ``GET /v1/models``, ``/health``,
``/metrics`` and ``POST /reset_prefix_cache`` (vLLM's dev-mode route). Streaming sends the role
chunk and the first content at the simulated TTFT, then the rest of the reply as the simulated
decode produces it, then the finish chunk, the usage chunk when ``stream_options.include_usage``
is set, and ``[DONE]``.

Draws are keyed by the ``X-Request-Id`` header when the client sends one, otherwise by a digest
of the prompt, so the same prompt gets the same reply (like a model at temperature 0).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp

from mercato.engine.chat import render_chat
from mercato.engine.core import EngineCore, EngineRequest
from mercato.engine.kv_publisher import KVEventPublisher
from mercato.engine.metrics import EngineCollector
from mercato.engine.protocol import (
    ApiError,
    ChatCompletionRequest,
    chunk_body,
    completion_body,
    parse_chat_request,
    sse,
    usage_chunk_body,
)
from mercato.engine.realtime import RealtimeEngine, Ticket

MIN_STREAM_INTERVAL_S = 0.005  # wall seconds between content chunks, at least
TOKENS_PER_CHUNK = 4  # a streamed content chunk covers about this many decode steps


def create_app(core: EngineCore, model_name: str, speed: float = 1.0, instance: str | None = None,
               kv_publisher: KVEventPublisher | None = None) -> FastAPI:
    """A FastAPI app serving ``core`` as model ``model_name``; ``speed`` scales simulated time.

    ``instance`` is sent as every response's ``system_fingerprint``, so a client behind any router
    knows which engine served it (and can price it from that engine's list prices).
    ``kv_publisher`` publishes the core's KV events after every engine step (and closes with the app).
    """
    engine = RealtimeEngine(core, speed, kv_publisher.flush if kv_publisher is not None else None)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(EngineCollector(core, model_name))
    created = int(time.time())
    step_s = core.profile.decode_step_seconds(1)
    interval = 0.0 if engine.instant else max(MIN_STREAM_INTERVAL_S, TOKENS_PER_CHUNK * step_s / speed)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        if kv_publisher is not None:
            kv_publisher.start()
        yield
        await engine.stop()
        if kv_publisher is not None:
            await kv_publisher.close()

    app = FastAPI(title=f"mercato simulated engine ({model_name})", lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models")
    async def models() -> dict[str, object]:
        return {"object": "list", "data": [{
            "id": model_name, "object": "model", "created": created, "owned_by": "mercato",
            "root": core.profile.hf_model, "parent": None, "max_model_len": core.max_model_len,
        }]}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/reset_prefix_cache")
    async def reset_prefix_cache() -> Response:
        if not core.reset_prefix_cache():
            raise ApiError("Failed to reset the prefix cache: requests are running", 400)
        if kv_publisher is not None:
            kv_publisher.flush()
        return Response(status_code=200)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        body = parse_chat_request(await request.body())
        if body.model is not None and body.model != model_name:
            raise ApiError(f"The model `{body.model}` does not exist.", 404, "NotFoundError")
        response_id = f"chatcmpl-{uuid.uuid4().hex}"
        engine_request = _engine_request(body, response_id, request.headers.get("x-request-id"))
        try:
            ticket = engine.submit(engine_request)
        except ValueError as exc:
            raise ApiError(str(exc)) from None
        now = int(time.time())
        if not body.stream:
            result = await ticket.done
            return JSONResponse(completion_body(result, response_id, model_name, now, instance))
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        events = _stream(engine, ticket, _Envelope(response_id, model_name, now, instance), include_usage,
                         interval)
        return StreamingResponse(events, media_type="text/event-stream")

    return app


def _engine_request(body: ChatCompletionRequest, request_id: str, client_id: str | None) -> EngineRequest:
    """Render the messages and read the ``mercato`` extension; ApiError (400) on bad input."""
    try:
        prompt = render_chat(body.messages)
    except ValueError as exc:
        raise ApiError(str(exc)) from None
    return EngineRequest(
        request_id=request_id,
        prompt=prompt,
        max_tokens=body.token_limit,
        domain=body.domain,
        gold_answer=body.gold_answer,
        sample_key=client_id or hashlib.blake2b(prompt.encode(), digest_size=16).hexdigest(),
    )


@dataclass(frozen=True)
class _Envelope:
    """What every chunk of one response repeats."""

    response_id: str
    model: str
    created: int
    instance: str | None

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        """One content chunk as an SSE event."""
        body = chunk_body(self.response_id, self.model, self.created, delta, finish_reason, self.instance)
        return sse(body)


async def _stream(engine: RealtimeEngine, ticket: Ticket, env: _Envelope, include_usage: bool,
                  interval: float) -> AsyncIterator[str]:
    """Server-sent events for one request, paced by the simulated first token and decode."""
    await ticket.first_token
    yield env.chunk({"role": "assistant", "content": ""})
    sent = 0
    while not ticket.done.done():
        text = engine.partial_text(ticket.request_id)
        if len(text) > sent:
            yield env.chunk({"content": text[sent:]})
            sent = len(text)
        await asyncio.wait({ticket.done}, timeout=interval)
    result = ticket.done.result()
    if len(result.text) > sent:
        yield env.chunk({"content": result.text[sent:]})
    yield env.chunk({}, result.finish_reason)
    if include_usage:
        yield sse(usage_chunk_body(result, env.response_id, env.model, env.created, env.instance))
    yield sse("[DONE]")


@contextmanager
def running_server(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields the base URL (port 0: a free one).

    For tests and demos that need a live engine in-process; the server stops when the block ends.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="mercato-engine-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15.0
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the engine server did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=15.0)
