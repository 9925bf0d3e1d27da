"""The live gateway: a thin FastAPI app around the framework-free Router core.

Per chat request: authenticate (optional per-buyer keys) -> read a bounded body -> validate ->
buyer report and session -> micro-batcher (the Router allocates the batch) -> forward with
failover -> answer (chunks passed through as they arrive, or one rebuilt JSON) -> the Router
learns from the observation and writes the ledger record, committed before the response ends.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``/health`` (the process is up),
``/ready`` (at least one backend's breaker is closed), ``/metrics`` (Prometheus).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from mercato.engine.tokenizer import count_tokens
from mercato.gateway.accounting import GroupCommitter, SQLiteAccountingStore
from mercato.gateway.backends import BackendPool, Forwarding
from mercato.gateway.batcher import MicroBatcher, QueueFullError
from mercato.gateway.chat_api import (
    AUTO_MODEL,
    ChatRequest,
    buyer_report,
    parse_chat_request,
    session_of,
    tracing,
    usage_object,
)
from mercato.gateway.config import GatewayConfig
from mercato.gateway.errors import APIError
from mercato.gateway.metrics import GatewayMetrics
from mercato.gateway.types import (
    AccountingStore,
    Decision,
    LedgerRecord,
    Observation,
    RouteRequest,
    RoutingCore,
)
from mercato.workloads.evaluate import is_correct

log = logging.getLogger("mercato.gateway")
ANONYMOUS = "anonymous"
T = TypeVar("T")


def _key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Gateway:
    """Everything one running gateway holds: router, batcher, backend pools, ledger, metrics."""

    def __init__(self, config: GatewayConfig, router: RoutingCore | None = None,
                 store: AccountingStore | None = None) -> None:
        self.config = config
        # The app writes the ledger (group commits from a worker thread, so that durable commits
        # never stall the event loop) into ``store``, or into SQLite at ``accounting.db`` when it
        # builds the router itself. A caller that brings its own router and no store accounts
        # for itself (for example through a router that was given a store).
        self._owns_store = router is None and store is None
        self.store: AccountingStore | None = (
            SQLiteAccountingStore(config.accounting.db, config.accounting.synchronous)
            if self._owns_store else store)
        self.committer = GroupCommitter(self.store) if self.store is not None else None
        self.router: RoutingCore = router or config.build_router()
        self.policy = str(self.router.snapshot()["policy"])
        self.metrics = GatewayMetrics()
        self.pool = BackendPool(config, self._on_health)
        b = config.batching
        self.batcher: MicroBatcher[RouteRequest, Decision] = MicroBatcher(
            self._route, b.max_batch_size, b.max_wait_ms / 1000.0, b.queue_limit, on_batch=self._on_batch)
        self.models = sorted({bc.model for bc in config.backends})
        self._keys = {_key_digest(k): buyer for k, buyer in config.api_keys.items()}
        for name, backend in self.pool.backends.items():
            self.metrics.watch_backend(name, lambda b=backend: b.in_flight,
                                       lambda b=backend: float(b.breaker.state))
        self.metrics.watch_queue(lambda: len(self.batcher))
        self._health_task: asyncio.Task[None] | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the backend pools and start the health-check loop."""
        await self.pool.start()
        self._health_task = asyncio.create_task(self.pool.health_loop(), name="mercato-health")

    async def stop(self) -> None:
        """Stop the loop, fail what is still queued, close pools and the ledger."""
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        self.batcher.close()
        await self.pool.aclose()
        if self.committer is not None:
            await self.committer.aclose()
        if self._owns_store and self.store is not None:
            self.store.close()

    # ---- router plumbing -------------------------------------------------------------------
    def _route(self, batch: list[RouteRequest]) -> list[Decision]:
        flushed = time.perf_counter()
        for req in batch:
            req.extra["batch_wait_s"] = flushed - req.extra["queued_at"]
        return self.router.route(batch, time.time())

    def _on_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.auction.observe(seconds)

    def _on_health(self, backend: str, healthy: bool) -> None:
        log.warning("backend %s is now %s", backend, "healthy" if healthy else "unhealthy (circuit open)")
        self.router.set_health(backend, healthy)

    # ---- request pieces --------------------------------------------------------------------
    def authenticate(self, request: Request) -> str | None:
        """The buyer named by the bearer key, None when keys are not enabled; 401 otherwise."""
        if not self._keys:
            return None
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        buyer = self._keys.get(_key_digest(key.strip())) if scheme.lower() == "bearer" else None
        if buyer is None:
            raise APIError(401, "a valid API key is required: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")
        return buyer

    async def read_body(self, request: Request) -> bytes:
        """The request body, refused with 413 as soon as it passes ``server.max_body_bytes``."""
        limit = self.config.server.max_body_bytes
        declared = request.headers.get("content-length", "")
        too_big = APIError(413, f"the request body exceeds the gateway's limit of {limit} bytes",
                           code="request_too_large")
        if declared.isdigit() and int(declared) > limit:
            raise too_big
        parts: list[bytes] = []
        size = 0
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise too_big
            parts.append(part)
        return b"".join(parts)

    def route_request(self, request: Request, chat: ChatRequest, buyer: str | None) -> RouteRequest:
        """The Router's view of a validated request."""
        if chat.model != AUTO_MODEL and chat.model not in self.models:
            raise APIError(404, f"model {chat.model!r} is not served here; choose one of "
                           f"{', '.join([AUTO_MODEL, *self.models])}", param="model", code="model_not_found")
        report = buyer_report(chat.extension, request.headers, self.config.buyer_defaults)
        trace = tracing(request.headers)
        session, turn = session_of(chat, trace)
        return RouteRequest(
            request_id=uuid.uuid4().hex, prompt=chat.prompt, prompt_tokens=count_tokens(chat.prompt),
            max_tokens=chat.max_tokens or self.config.buyer_defaults.max_tokens, session_id=session,
            turn=turn, domain=chat.domain, source=trace.source, buyer=buyer or chat.user or ANONYMOUS,
            report=report, arrival=time.time(), stream=chat.stream, model=chat.model,
            gold_answer=chat.gold_answer)

    async def decide(self, req: RouteRequest) -> Decision:
        """Wait for the request's micro-batch to be allocated; 429 when the queue is full."""
        req.extra["queued_at"] = time.perf_counter()
        try:
            future = self.batcher.submit(req)
        except QueueFullError as err:
            raise APIError(429, f"{err}; retry after {err.retry_after_s} s", code="queue_full",
                           headers={"retry-after": str(err.retry_after_s)}) from None
        try:
            decision = await future
        except asyncio.CancelledError:
            # The client left after its batch was routed: close the decision so the router forgets it.
            if future.done() and not future.cancelled() and future.exception() is None:
                self.router.finish(future.result(), _failed(req, "", "client went away"), time.time())
            raise
        if not decision.backends:
            self.router.finish(decision, _failed(req, "", "no eligible backend"), time.time())
            raise APIError(503, "no healthy backend can serve this request (model, health and deadline "
                           "considered)", code="no_eligible_backend", headers={"retry-after": "1"})
        return decision

    def forwarding(self, decision: Decision, chat: ChatRequest) -> Forwarding:
        """A forwarding that keeps the router's in-flight counts right across failover."""
        return Forwarding(
            self.pool, chat, decision.backends, decision.request.request_id, restartable=not chat.stream,
            on_attempt=lambda name: self.router.started(decision, name, time.time()),
            on_abandon=lambda name: self.router.release(decision, name))

    def settle(self, decision: Decision, fw: Forwarding, error: str | None) -> LedgerRecord | None:
        """Tell the router what happened; it learns and returns the ledger record (None if failed)."""
        req = decision.request
        if error is not None or fw.served is None:
            obs = _failed(req, fw.served or decision.backends[0], error or "not served")
        else:
            prompt, cached, completion = _token_counts(req, fw)
            text = fw.result.text
            # A buyer that shares the reference answer (demo, experiments) lets the hub judge the
            # reply as IEMAS does, and the quality predictor learn from it.
            correct = is_correct(text, req.gold_answer) if req.gold_answer is not None else None
            obs = Observation(request_id=req.request_id, backend=fw.served, ok=True, ttft_s=fw.ttft_s,
                              latency_s=fw.latency_s, prompt_tokens=prompt, cached_tokens=cached,
                              completion_tokens=completion, text=text, correct=correct)
        for name in fw.failed_over_to:
            self.metrics.failovers.labels(name).inc()
        record = self.router.finish(decision, obs, time.time())
        if record is not None:
            self.metrics.payments.inc(record.payment)
            self.metrics.costs.inc(record.cost)
            self.metrics.surplus.inc(record.surplus)
        return record

    async def persist(self, record: LedgerRecord | None) -> None:
        """Commit the record before the response completes (when the app owns the ledger)."""
        if record is None or self.committer is None:
            return
        if not await self.committer.record(record):
            log.error("ledger already held request %s: not written twice", record.request_id)

    def observe(self, status: int, stream: bool, t0: float, fw: Forwarding | None) -> None:
        """Request counter, latency and gateway-side TTFT."""
        self.metrics.requests.labels(str(status), "true" if stream else "false").inc()
        self.metrics.latency.observe(time.perf_counter() - t0)
        if fw is not None and fw.first_token_at is not None:
            self.metrics.ttft.observe(fw.first_token_at - t0)


def _failed(req: RouteRequest, backend: str, error: str) -> Observation:
    return Observation(request_id=req.request_id, backend=backend, ok=False, ttft_s=None, latency_s=None,
                       prompt_tokens=req.prompt_tokens, cached_tokens=0, completion_tokens=0, text="",
                       error=error)


def _token_counts(req: RouteRequest, fw: Forwarding) -> tuple[int, int, int]:
    """(prompt, cached, completion) tokens from the backend's usage, estimated if it sent none."""
    return fw.result.usage_counts() or (req.prompt_tokens, 0, count_tokens(fw.result.text))


def _response_headers(decision: Decision, fw: Forwarding, policy: str) -> dict[str, str]:
    """Where the request went, and how long it waited for its micro-batch (the rest is overhead)."""
    req = decision.request
    return {"x-mercato-request-id": req.request_id, "x-mercato-backend": fw.served or "",
            "x-mercato-policy": policy,
            "x-mercato-batch-wait-ms": f"{1000.0 * req.extra.get('batch_wait_s', 0.0):.3f}"}


def _billing(record: LedgerRecord | None, fw: Forwarding) -> dict[str, Any]:
    if record is None:
        return {"failovers": fw.failovers}
    return {"request_id": record.request_id, "backend": record.backend, "policy": record.policy,
            "paid": record.paid, "cost": record.cost, "payment": record.payment,
            "surplus": record.surplus, "failovers": fw.failovers}


async def _guarded(gw: Gateway, decision: Decision, fw: Forwarding, step: Awaitable[T], t0: float) -> T:
    """Await a forwarding step; if it fails, close the request with the router, then re-raise."""
    try:
        return await step
    except APIError as err:
        gw.settle(decision, fw, err.message)
        gw.observe(err.status, fw.chat.stream, t0, fw)
        raise
    except BaseException:
        gw.settle(decision, fw, "client went away")
        raise


async def _complete(gw: Gateway, chat: ChatRequest, decision: Decision, t0: float) -> Response:
    fw = gw.forwarding(decision, chat)
    await _guarded(gw, decision, fw, fw.complete(), t0)
    record = gw.settle(decision, fw, None)
    await gw.persist(record)
    body = fw.result.completion(f"chatcmpl-{decision.request.request_id}",
                                usage_object(*_token_counts(decision.request, fw)))
    body["mercato"] = _billing(record, fw)
    gw.observe(200, False, t0, fw)
    return JSONResponse(body, headers=_response_headers(decision, fw, gw.policy))


async def _stream(gw: Gateway, chat: ChatRequest, decision: Decision, t0: float) -> Response:
    fw = gw.forwarding(decision, chat)
    chunks = fw.chunks()
    # Wait for the first chunk before answering: until then failover is invisible to the client
    # and a request no backend could serve still gets a proper HTTP error status.
    first = await _guarded(gw, decision, fw, anext(chunks, None), t0)

    def frame(item: tuple[bytes, dict[str, Any]]) -> bytes | None:
        data, chunk = item
        if chunk.get("usage") and not chunk.get("choices") and not chat.include_usage:
            return None  # the usage chunk the gateway forced; this client did not ask for it
        return b"data: " + data + b"\n\n"

    async def body() -> AsyncIterator[bytes]:
        settled = False
        try:
            if first is not None and (out := frame(first)) is not None:
                yield out
            async for item in chunks:
                if (out := frame(item)) is not None:
                    yield out
            settled = True
            record = gw.settle(decision, fw, None)
            await gw.persist(record)
            gw.observe(200, True, t0, fw)
            yield b"data: [DONE]\n\n"
        except APIError as err:  # the backend broke after chunks reached the client
            if not settled:
                settled = True
                gw.settle(decision, fw, err.message)
            gw.observe(err.status, True, t0, fw)
            yield b"data: " + json.dumps(err.body()).encode() + b"\n\n"
        finally:
            if not settled:
                gw.settle(decision, fw, "client went away")
            await chunks.aclose()

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers=_response_headers(decision, fw, gw.policy))


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
        try:
            buyer = gw.authenticate(request)
            chat = parse_chat_request(await gw.read_body(request))
            req = gw.route_request(request, chat, buyer)
            decision = await gw.decide(req)
        except APIError as err:
            gw.observe(err.status, False, t0, None)
            raise
        if chat.stream:
            return await _stream(gw, chat, decision, t0)
        return await _complete(gw, chat, decision, t0)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        gw.authenticate(request)
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
