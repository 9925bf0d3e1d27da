"""The simulated engine as an OpenAI-compatible HTTP server (what ``mercato engine serve`` runs).

``create_app(core, model_name)`` wraps one :class:`EngineCore` in a FastAPI app with vLLM's
endpoints: ``POST /v1/chat/completions`` and ``/v1/completions`` (streaming and not),
``POST /v1/embeddings`` (:mod:`mercato.engine.embeddings`), ``GET /v1/models``, ``/health``,
``/metrics`` and ``POST /reset_prefix_cache`` (vLLM's dev-mode route). Streaming sends the role
chunk (chat only) and the first content at the simulated TTFT, then the rest of the reply as the
simulated decode produces it, then the finish chunk, the usage chunk when
``stream_options.include_usage`` is set, and ``[DONE]``. A completion's prompt is generated from
as it is, without the chat template, through the same simulated engine.

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

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp

from mercato.engine.chat import render_chat
from mercato.engine.core import EngineCore, EngineRequest, EngineResult
from mercato.engine.embeddings import embeddings_body, input_ids
from mercato.engine.kv_publisher import KVEventPublisher
from mercato.engine.metrics import EngineCollector
from mercato.engine.protocol import (
    ApiError,
    CompletionRequest,
    EmbeddingRequest,
    GenerationRequest,
    chunk_body,
    completion_body,
    parse_body,
    parse_chat_request,
    sse,
    text_chunk_body,
    text_completion_body,
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

    def check_model(name: str | None) -> None:
        if name is not None and name != model_name:
            raise ApiError(f"The model `{name}` does not exist.", 404, "NotFoundError")

    async def generate(body: GenerationRequest, prompt: str, env: _Envelope,
                       client_id: str | None) -> JSONResponse | StreamingResponse:
        """Run one generation and answer it whole or as a stream, in ``env``'s object kind."""
        check_model(body.model)
        try:
            ticket = engine.submit(_engine_request(body, prompt, env.response_id, client_id))
        except ValueError as exc:
            raise ApiError(str(exc)) from None
        if not body.stream:
            result = await ticket.done
            whole = completion_body if env.chat else text_completion_body
            return JSONResponse(whole(result, env.response_id, model_name, env.created, instance))
        events = _stream(engine, ticket, env, body.include_usage, interval)
        return StreamingResponse(events, media_type="text/event-stream")

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        body = parse_chat_request(await request.body())
        try:
            prompt = render_chat(body.messages)
        except ValueError as exc:
            raise ApiError(str(exc)) from None
        env = _Envelope(f"chatcmpl-{uuid.uuid4().hex}", model_name, int(time.time()), instance, chat=True)
        return await generate(body, prompt, env, request.headers.get("x-request-id"))

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> JSONResponse | StreamingResponse:
        body = parse_body(await request.body(), CompletionRequest)
        env = _Envelope(f"cmpl-{uuid.uuid4().hex}", model_name, int(time.time()), instance, chat=False)
        return await generate(body, body.text, env, request.headers.get("x-request-id"))

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = parse_body(await request.body(), EmbeddingRequest)
        check_model(body.model)
        inputs = input_ids(body.input)
        if not inputs or any(not 0 < len(ids) <= core.max_model_len for ids in inputs):
            raise ApiError(f"each input must hold 1 to {core.max_model_len} tokens (the model's context)")
        return JSONResponse(embeddings_body(inputs, model_name, body.encoding_format))

    return app


def _engine_request(body: GenerationRequest, prompt: str, request_id: str,
                    client_id: str | None) -> EngineRequest:
    """The engine's request: the prompt, the reply budget and the ``mercato`` extension's tags."""
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
    """What every chunk of one response repeats; ``chat`` chunks, else ``text_completion`` ones."""

    response_id: str
    model: str
    created: int
    instance: str | None
    chat: bool

    def chunk(self, text: str | None, finish_reason: str | None = None) -> str:
        """One content chunk as an SSE event (None: the chat role chunk)."""
        if not self.chat:
            return sse(text_chunk_body(self.response_id, self.model, self.created, text or "",
                                       finish_reason, self.instance))
        delta = {"role": "assistant", "content": ""} if text is None else {"content": text} if text else {}
        body = chunk_body(self.response_id, self.model, self.created, delta, finish_reason, self.instance)
        return sse(body)

    def usage(self, result: EngineResult) -> str:
        """The usage chunk as an SSE event."""
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return sse(usage_chunk_body(result, self.response_id, self.model, self.created, self.instance, kind))


async def _stream(engine: RealtimeEngine, ticket: Ticket, env: _Envelope, include_usage: bool,
                  interval: float) -> AsyncIterator[str]:
    """Server-sent events for one request, paced by the simulated first token and decode."""
    await ticket.first_token
    if env.chat:
        yield env.chunk(None)
    sent = 0
    while not ticket.done.done():
        text = engine.partial_text(ticket.request_id)
        if len(text) > sent:
            yield env.chunk(text[sent:])
            sent = len(text)
        await asyncio.wait({ticket.done}, timeout=interval)
    result = ticket.done.result()
    if len(result.text) > sent:
        yield env.chunk(result.text[sent:])
    yield env.chunk("", result.finish_reason)
    if include_usage:
        yield env.usage(result)
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
