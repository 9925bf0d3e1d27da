"""The gateway's request service, free of any web framework.

One request (chat completion, completion or embedding) walks: authenticate (optional per-buyer
keys) -> read a bounded body -> validate -> buyer report and session -> reserve within the buyer's
budget and rate limits -> micro-batcher (the Router allocates the batch) -> the reservation
resized to the price -> forward along the ranking with failover
(:class:`~mercato.gateway.core.lifecycle.Dispatch` keeps the router's counts right) -> answer ->
settle (the Router learns and prices; the reservation settles to the payment) -> persist (the
ledger record is committed before the response ends). :mod:`mercato.gateway.live.app` maps these
steps onto HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

import orjson

from mercato.engine.tokenizer import count_tokens
from mercato.gateway.core.lifecycle import Dispatch
from mercato.gateway.core.types import (
    AUTO_MODEL,
    AccountingStore,
    Decision,
    LedgerRecord,
    Observation,
    RouteRequest,
    RoutingCore,
)
from mercato.gateway.live.access_log import AccessLog
from mercato.gateway.live.assemble import batching_rule, build_router, tree_trainer
from mercato.gateway.live.backends import BackendPool, Forwarding
from mercato.gateway.live.batcher import MicroBatcher, OverloadedError, QueueFullError
from mercato.gateway.live.config import GatewayConfig
from mercato.gateway.live.enforcement import Enforcement
from mercato.gateway.live.errors import APIError
from mercato.gateway.live.kv_subscriber import KVEventSubscribers, kv_index
from mercato.gateway.live.ledger import GroupCommitter
from mercato.gateway.live.ledger_spool import SpoolingLedger
from mercato.gateway.live.ledger_store import open_ledger_store
from mercato.gateway.live.metrics import GatewayMetrics
from mercato.gateway.live.outcomes import Outcome
from mercato.gateway.live.prefill_probe import calibrate
from mercato.gateway.live.replica_sync import ReplicaSync
from mercato.gateway.live.reporter import OutcomeReporter
from mercato.gateway.live.tasks import cancel_all
from mercato.gateway.live.wire import (
    CHAT,
    COMPLETIONS,
    ClientRequest,
    buyer_report,
    parse_request,
    session_of,
    tracing,
    usage_object,
)
from mercato.workloads.evaluate import is_correct

log = logging.getLogger("mercato.gateway")
ANONYMOUS = "anonymous"
CLIENT_CLOSED = 499  # the status logged for a request whose client left first (nginx's convention)
# Finished requests are learned from in one pass at most this often: off the response path, and
# one least-squares solve and tree compilation per pass instead of per request.
LEARN_INTERVAL_S = 0.02
T = TypeVar("T")
# OpenAI's id prefixes of the response objects (embeddings answers have no id)
_ID_PREFIX = {CHAT: "chatcmpl", COMPLETIONS: "cmpl"}


class Gateway:
    """Everything one running gateway holds: router, batcher, backend pools, ledger, metrics."""

    def __init__(self, config: GatewayConfig, router: RoutingCore | None = None,
                 store: AccountingStore | None = None) -> None:
        self.config = config
        # The app writes the ledger (group commits from a worker thread, so that durable commits
        # never stall the event loop) into ``store``, or into the store ``accounting.db`` names
        # (SQLite, or PostgreSQL with an outage spool) when it builds the router itself. A caller
        # that brings its own router and no store accounts for itself (for example through a
        # router that was given a store).
        self._owns_store = router is None and store is None
        self.store: AccountingStore | None = (
            open_ledger_store(config.accounting) if self._owns_store else store)
        self.committer = GroupCommitter(self.store) if self.store is not None else None
        # Backends that publish KV events get exact cache state, when the app builds the router.
        self.kv_index = kv_index(config) if router is None else None
        # ... and its trees learn in a child process (started with the gateway), off the event loop.
        self.trainer = tree_trainer(config) if router is None else None
        self.router: RoutingCore = router or build_router(config, self.kv_index, self.trainer)
        self.policy = str(self.router.snapshot()["policy"])
        self.metrics = GatewayMetrics({b.name: b.model for b in config.backends},
                                      {*config.api_keys.values(), *config.limits.buyers, ANONYMOUS})
        self.enforcement = Enforcement(config, self.metrics)
        # Replicas behind one port count each other's load, share what they left in caches, and
        # show each other's metrics.
        self.replicas = self.router.replica_view()
        state = config.state
        self.replica_sync = (ReplicaSync(self.replicas, state.redis_url, share=state.share_routing,
                                         metrics=self.metrics.render)
                             if state.redis_url is not None else None)
        self.access_log = AccessLog(config.logging) if config.logging.access_log else None
        self.reporter = OutcomeReporter(self.metrics, self.access_log)
        self.kv_events = (KVEventSubscribers(config, self.kv_index, self.metrics)
                          if self.kv_index is not None else None)
        self.pool = BackendPool(config, self._on_health)
        b = config.batching
        self.outstanding = 0  # requests routed and not yet settled
        self._capacity = {bc.name: bc.capacity for bc in config.backends}
        self.batcher: MicroBatcher[RouteRequest, Decision] = MicroBatcher(
            self._route, batching_rule(config), b.queue_limit, on_batch=self._on_batch,
            room=self._room, max_hold_s=b.max_hold_ms / 1000.0)
        self.models = sorted({bc.model for bc in config.backends})
        for name, backend in self.pool.backends.items():
            self.metrics.watch_backend(name, lambda b=backend: b.in_flight,
                                       lambda b=backend: float(b.breaker.state))
        self.metrics.watch_queue(lambda: len(self.batcher))
        if (trainer := self.trainer) is not None:
            self.metrics.watch_tree_trainer(lambda: float(trainer.running))
        if (sync := self.replica_sync) is not None:
            self.metrics.watch_replicas(lambda: sync.peers, lambda: float(sync.reachable))
        if isinstance(self.store, SpoolingLedger):
            spool = self.store
            self.metrics.watch_ledger(lambda: float(spool.up), lambda: spool.spooled, lambda: spool.pending)
        self._health_task: asyncio.Task[None] | None = None
        self._learning: asyncio.TimerHandle | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect the limits, open the backend pools, start the health checks, follow the KV events."""
        if self.access_log is not None:
            self.access_log.start()
        if self.trainer is not None:
            self.trainer.start()
        await self.enforcement.start()
        await self.pool.start()
        if self.config.prefill_probe.enabled:
            await calibrate(self.pool, self.router, self.config.prefill_probe, self.config.policy.seed)
        self._health_task = asyncio.create_task(self.pool.health_loop(), name="mercato-health")
        if self.kv_events is not None:
            self.kv_events.start()
        if self.replica_sync is not None:
            await self.replica_sync.start()

    async def stop(self) -> None:
        """Stop the loop, fail what is still queued, close pools and the ledger."""
        await cancel_all([self._health_task])
        if self.kv_events is not None:
            await self.kv_events.stop()
        if self.replica_sync is not None:
            await self.replica_sync.stop()
        self.batcher.close()
        if self._learning is not None:
            self._learning.cancel()
        self._learn()
        if self.trainer is not None:
            self.trainer.close()
        await self.enforcement.stop()
        self.reporter.flush()
        if self.access_log is not None:
            self.access_log.close()
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
        decisions = self.router.route(batch, time.time())
        self.outstanding += len(decisions)
        return decisions

    def _room(self) -> int:
        """How many more requests may be routed now (admission; see ``BatchingConfig``), counting
        what the other replicas have in flight against the same slots.

        With no healthy backend there is nothing to wait for: routing answers 503 at once.
        """
        slots = sum(self._capacity[name] for name in self.pool.healthy())
        if slots == 0:
            return self.config.batching.max_batch_size
        limit = int(self.config.batching.max_inflight_per_slot * slots)
        return limit - self.outstanding - int(self.replicas.others_inflight())

    def _settled(self) -> None:
        self.outstanding -= 1
        self.batcher.wake()
        if self._learning is None:
            self._learning = asyncio.get_running_loop().call_later(LEARN_INTERVAL_S, self._learn)

    def _learn(self) -> None:
        """The router learns from what finished since the last pass (see ``defer_learning``)."""
        self._learning = None
        self.router.learn()

    def dispatch(self, decision: Decision) -> Dispatch:
        """The request's path through its ranked backends, counted for admission until settled."""
        return Dispatch(self.router, decision, time.time, self._settled)

    def _on_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.auction.observe(seconds)

    def _on_health(self, backend: str, healthy: bool) -> None:
        log.warning("backend %s is now %s", backend, "healthy" if healthy else "unhealthy (circuit open)")
        self.router.set_health(backend, healthy)
        if healthy:
            self.batcher.wake()

    # ---- request pieces --------------------------------------------------------------------
    async def authenticate(self, headers: Mapping[str, str]) -> str | None:
        """The buyer named by the bearer key, None when keys are not enabled; 401 otherwise."""
        keys = self.enforcement.keys
        if not keys.required:
            return None
        scheme, _, key = headers.get("authorization", "").partition(" ")
        buyer = await keys.buyer(key.strip()) if scheme.lower() == "bearer" else None
        if buyer is None:
            raise APIError(401, "a valid API key is required: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")
        return buyer

    async def read_body(self, headers: Mapping[str, str], stream: AsyncIterator[bytes]) -> bytes:
        """The request body, refused with 413 as soon as it passes ``server.max_body_bytes``."""
        limit = self.config.server.max_body_bytes
        declared = headers.get("content-length", "")
        too_big = APIError(413, f"the request body exceeds the gateway's limit of {limit} bytes",
                           code="request_too_large")
        if declared.isdigit() and int(declared) > limit:
            raise too_big
        parts: list[bytes] = []
        size = 0
        async for part in stream:
            size += len(part)
            if size > limit:
                raise too_big
            parts.append(part)
        return b"".join(parts)

    def route_request(self, headers: Mapping[str, str], request: ClientRequest,
                      buyer: str | None) -> RouteRequest:
        """The Router's view of a validated request."""
        if request.model != AUTO_MODEL and request.model not in self.models:
            raise APIError(404, f"model {request.model!r} is not served here; choose one of "
                           f"{', '.join([AUTO_MODEL, *self.models])}", param="model", code="model_not_found")
        report = buyer_report(request.extension, headers, self.config.buyer_defaults)
        trace = tracing(headers)
        session, turn = session_of(request, trace)
        prompt_tokens = (request.token_count if request.token_count is not None
                         else count_tokens(request.prompt))
        return RouteRequest(
            request_id=uuid.uuid4().hex, prompt=request.prompt, prompt_tokens=prompt_tokens,
            max_tokens=request.max_tokens or self.config.buyer_defaults.max_tokens, session_id=session,
            turn=turn, domain=request.domain, source=trace.source,
            buyer=buyer or request.user or ANONYMOUS, report=report, arrival=time.time(),
            stream=request.stream, model=request.model, gold_answer=request.gold_answer,
            messages=request.messages)

    async def decide(self, req: RouteRequest) -> Dispatch:
        """Wait for the request's micro-batch to be allocated; 429 when the queue is full."""
        req.extra["queued_at"] = time.perf_counter()
        try:
            future = self.batcher.submit(req)
        except QueueFullError as err:
            raise _retry_later(err, "queue_full") from None
        try:
            dispatch = self.dispatch(await future)
        except OverloadedError as err:
            raise _retry_later(err, "overloaded") from None
        except asyncio.CancelledError:
            # The client left after its batch was routed: close the decision so the router forgets it.
            if future.done() and not future.cancelled() and future.exception() is None:
                self.dispatch(future.result()).fail("client went away")
            raise
        if not dispatch.ranking:
            dispatch.fail("no eligible backend")
            deadline = req.report.deadline_ms
            if deadline is not None and self._serves(req):
                # Healthy backends exist and the deadline ruled them all out: the same request would
                # fail again, so this is the client's to change (4xx, which clients do not retry).
                raise APIError(422, f"no backend is predicted to answer within the deadline of {deadline:g} "
                               "ms; raise mercato.deadline_ms (or X-Mercato-Deadline-Ms) or drop it",
                               param="mercato.deadline_ms", code="deadline_infeasible")
            raise APIError(503, "no healthy backend can serve this request (model, health and deadline "
                           "considered)", code="no_eligible_backend", headers={"retry-after": "1"})
        return dispatch

    def _serves(self, req: RouteRequest) -> bool:
        """True when a healthy backend serves the request's model."""
        return any(req.any_model or self.pool[name].config.model == req.model for name in self.pool.healthy())

    def forwarding(self, dispatch: Dispatch, request: ClientRequest) -> Forwarding:
        """A forwarding that keeps the router's in-flight counts right across failover."""
        return Forwarding(self.pool, request, dispatch.ranking, dispatch.request.request_id,
                          restartable=not request.stream, on_attempt=dispatch.attempt,
                          on_abandon=dispatch.abandon)

    def settle(self, dispatch: Dispatch, fw: Forwarding, error: str | None) -> LedgerRecord | None:
        """Tell the router what happened; it learns and returns the ledger record (None if failed)."""
        req = dispatch.request
        for name in fw.failed_over_to:
            self.metrics.failovers.labels(name).inc()
        if error is not None or fw.served is None:
            dispatch.fail(error or "not served")
            self.enforcement.release(req, None, 0)
            return None
        prompt, cached, completion = token_counts(req, fw)
        text = fw.result.text
        # A buyer that shares the reference answer (demo, experiments) lets the hub judge the
        # reply as IEMAS does, and the quality predictor learn from it.
        correct = is_correct(text, req.gold_answer) if req.gold_answer is not None else None
        record = dispatch.succeed(Observation(
            request_id=req.request_id, backend=fw.served, ok=True, ttft_s=fw.ttft_s,
            latency_s=fw.latency_s, prompt_tokens=prompt, cached_tokens=cached,
            completion_tokens=completion, text=text, correct=correct))
        self.enforcement.release(req, record, prompt + completion)
        return record

    async def persist(self, record: LedgerRecord | None) -> None:
        """Commit the record before the response completes (when the app owns the ledger)."""
        if record is None or self.committer is None:
            return
        if not await self.committer.record(record):
            log.error("ledger already held request %s: not written twice", record.request_id)

    def observe(self, status: int, t0: float, *, stream: bool = False, buyer: str | None = None,
                dispatch: Dispatch | None = None, fw: Forwarding | None = None,
                record: LedgerRecord | None = None, error: APIError | None = None,
                kind: str | None = None) -> None:
        """Report one finished request, once, whatever its outcome, to the metrics and the access
        log (both updated in a later pass: this only records what is known now).

        ``t0``: its receipt (``perf_counter``); ``buyer``: who sent it, when known before routing;
        ``kind``: the endpoint when ``fw`` does not tell it (logged as ``chat.completions``,
        ``completions`` or ``embeddings``).
        """
        kind = kind or (fw.request.kind if fw is not None else CHAT)
        outcome = Outcome(status, t0, time.perf_counter(), time.time(), kind.replace("/", "."), stream,
                          buyer=buyer)
        if dispatch is not None:
            req = dispatch.request
            outcome.request_id, outcome.buyer, outcome.model = req.request_id, req.buyer, req.model
        if fw is not None:
            outcome.backend, outcome.first_token_at = fw.served, fw.first_token_at
            outcome.failovers = fw.failovers
        if record is not None:
            outcome.prompt_tokens, outcome.cached_tokens = record.prompt_tokens, record.cached_tokens
            outcome.completion_tokens = record.completion_tokens
            outcome.cost, outcome.payment = record.cost, record.payment
        elif fw is not None and fw.served is not None and (usage := fw.result.usage_counts()):
            outcome.prompt_tokens, outcome.cached_tokens, outcome.completion_tokens = usage
        if error is not None:
            outcome.error, outcome.message = error.code or error.type, error.message
        self.reporter.add(outcome)


def _retry_later(err: QueueFullError | OverloadedError, code: str) -> APIError:
    """429 with ``Retry-After``: the gateway is too busy now, not the request wrong."""
    return APIError(429, f"{err}; retry after {err.retry_after_s} s", code=code,
                    headers={"retry-after": str(err.retry_after_s)})


def token_counts(req: RouteRequest, fw: Forwarding) -> tuple[int, int, int]:
    """(prompt, cached, completion) tokens from the backend's usage, estimated if it sent none."""
    return fw.result.usage_counts() or (req.prompt_tokens, 0, count_tokens(fw.result.text))


def response_headers(dispatch: Dispatch, fw: Forwarding, policy: str) -> dict[str, str]:
    """Where the request went, and how long it waited for its micro-batch (the rest is overhead)."""
    req = dispatch.request
    return {"x-mercato-request-id": req.request_id, "x-mercato-backend": fw.served or "",
            "x-mercato-policy": policy,
            "x-mercato-batch-wait-ms": f"{1000.0 * req.extra.get('batch_wait_s', 0.0):.3f}"}


def billing(record: LedgerRecord | None, fw: Forwarding) -> dict[str, Any]:
    """The ``mercato`` object of a response: where it went and what the buyer paid."""
    if record is None:
        return {"failovers": fw.failovers}
    return {"request_id": record.request_id, "backend": record.backend, "policy": record.policy,
            "paid": record.paid, "cost": record.cost, "payment": record.payment,
            "surplus": record.surplus, "failovers": fw.failovers}


async def _guarded(gw: Gateway, dispatch: Dispatch, fw: Forwarding, step: Awaitable[T], t0: float) -> T:
    """Await a forwarding step; if it fails, close the request with the router, then re-raise."""
    try:
        return await step
    except APIError as err:
        gw.settle(dispatch, fw, err.message)
        gw.observe(err.status, t0, stream=fw.request.stream, dispatch=dispatch, fw=fw, error=err)
        raise
    except BaseException:
        gw.settle(dispatch, fw, "client went away")
        gw.observe(CLIENT_CLOSED, t0, stream=fw.request.stream, dispatch=dispatch, fw=fw)
        raise


async def admit(gw: Gateway, kind: str, headers: Mapping[str, str], body: AsyncIterator[bytes],
                t0: float) -> tuple[ClientRequest, Dispatch]:
    """Authenticate, read and validate a request to endpoint ``kind``, reserve within its buyer's
    limits, and wait for its routing and price."""
    buyer = None
    try:
        buyer = await gw.authenticate(headers)
        request = parse_request(kind, await gw.read_body(headers, body))
        req = gw.route_request(headers, request, buyer)
        await gw.enforcement.admit(req)
        try:
            dispatch = await gw.decide(req)
            try:
                await gw.enforcement.priced(dispatch)
            except BaseException:
                dispatch.fail("refused by the buyer's budget")
                raise
        except BaseException:
            gw.enforcement.release(req, None, 0)
            raise
        return request, dispatch
    except APIError as err:
        gw.observe(err.status, t0, buyer=buyer, error=err, kind=kind)
        raise


async def complete(gw: Gateway, request: ClientRequest, dispatch: Dispatch,
                   t0: float) -> tuple[dict[str, Any], dict[str, str]]:
    """Serve a non-streaming client: the rebuilt response object and response headers."""
    fw = gw.forwarding(dispatch, request)
    await _guarded(gw, dispatch, fw, fw.complete(), t0)
    record = gw.settle(dispatch, fw, None)
    await gw.persist(record)
    response_id = f"{_ID_PREFIX.get(request.kind, request.kind)}-{dispatch.request.request_id}"
    body = fw.result.response(response_id, usage_object(*token_counts(dispatch.request, fw)))
    body["mercato"] = billing(record, fw)
    gw.observe(200, t0, dispatch=dispatch, fw=fw, record=record)
    return body, response_headers(dispatch, fw, gw.policy)


async def stream(gw: Gateway, request: ClientRequest, dispatch: Dispatch,
                 t0: float) -> tuple[AsyncIterator[bytes], dict[str, str]]:
    """Serve a streaming client: the SSE byte stream and response headers.

    Waits for the first chunk before answering: until then failover is invisible to the client
    and a request no backend could serve still gets a proper HTTP error status.
    """
    fw = gw.forwarding(dispatch, request)
    chunks = fw.chunks()
    first = await _guarded(gw, dispatch, fw, anext(chunks, None), t0)

    def frames(events: list[tuple[bytes, dict[str, Any]]]) -> bytes:
        """The SSE bytes of one read's events, without the usage chunk the client did not ask for."""
        return b"".join(b"data: " + data + b"\n\n" for data, chunk in events
                        if request.include_usage or not (chunk.get("usage") and not chunk.get("choices")))

    async def body() -> AsyncIterator[bytes]:
        settled = False
        try:
            if first is not None and (out := frames(first)):
                yield out
            async for events in chunks:
                if out := frames(events):
                    yield out
            settled = True
            record = gw.settle(dispatch, fw, None)
            await gw.persist(record)
            gw.observe(200, t0, stream=True, dispatch=dispatch, fw=fw, record=record)
            yield b"data: [DONE]\n\n"
        except APIError as err:  # the backend broke after chunks reached the client
            if not settled:
                settled = True
                gw.settle(dispatch, fw, err.message)
            gw.observe(err.status, t0, stream=True, dispatch=dispatch, fw=fw, error=err)
            yield b"data: " + orjson.dumps(err.body()) + b"\n\n"
        finally:
            if not settled:
                gw.settle(dispatch, fw, "client went away")
                gw.observe(CLIENT_CLOSED, t0, stream=True, dispatch=dispatch, fw=fw)
            await chunks.aclose()

    return body(), response_headers(dispatch, fw, gw.policy)
