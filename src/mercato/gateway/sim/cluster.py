"""The Router core in-process: simulated engines on one virtual clock, for experiments and tests.

Dialogues run concurrently up to a bound, turns run in order within a dialogue (the model's
own reply is appended to the history), requests are micro-batched by the live app's rule
(:class:`~mercato.gateway.core.batching.BatchingRule`), and each decision walks the live app's
request path (:class:`~mercato.gateway.core.lifecycle.Dispatch`) to an
:class:`~mercato.engine.EngineCore`: an engine taken down refuses new requests, which fail over
to the next backend of their ranking. Nothing sleeps: the loop jumps from event to event, so
thousands of requests take seconds.

TTFT is measured as in the IEMAS reference: from the moment the request reaches its backend
(so it includes the backend's own queueing, not the micro-batch wait) to its first token.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

from mercato.engine import EngineCore, EngineRequest, EngineResult, ModelProfile, get_profile
from mercato.engine.chat import render_chat
from mercato.engine.tokenizer import count_tokens
from mercato.gateway.core.batching import BatchingRule
from mercato.gateway.core.lifecycle import Dispatch
from mercato.gateway.core.policies import Policy
from mercato.gateway.core.router import Router, RouterSettings
from mercato.gateway.core.types import (
    BackendSpec,
    BuyerReport,
    Decision,
    Observation,
    RouteRequest,
    RoutingCore,
)
from mercato.workloads import Dialogue, dialogue_messages


@dataclass
class RequestLog:
    """One finished request, as experiments tabulate it."""

    request_id: str
    dialogue_id: str
    turn: int
    domain: str
    backend: str
    paid: bool
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    ttft_s: float
    latency_s: float
    queue_wait_s: float  # time waiting at the engine for a slot or KV blocks
    cost: float
    payment: float
    surplus: float
    correct: bool | None
    predicted_latency_s: float
    predicted_cost: float
    predicted_quality: float
    finished_at: float

    def row(self) -> dict[str, object]:
        """Plain dict for CSV/JSON."""
        return asdict(self)


def profile_backends(profiles: Sequence[str], max_num_seqs: int = 12) -> list[BackendSpec]:
    """One backend per profile name (names ``<profile>-<k>``), priced from the profile."""
    specs = []
    for k, name in enumerate(profiles):
        p = get_profile(name)
        specs.append(BackendSpec(name=f"{name}-{k}", model=p.name, capacity=max_num_seqs,
                                 price_input=p.price_input, price_cached_input=p.price_cached_input,
                                 price_output=p.price_output, profile=p.name))
    return specs


class InProcessCluster:
    """A Router in front of simulated engines, all on one virtual clock."""

    def __init__(self, backends: list[BackendSpec], policy: str | Policy = "auction", *,
                 settings: RouterSettings | None = None, batching: BatchingRule | None = None,
                 gpu_memory_utilization: float = 0.6, seed: int = 0,
                 router: RoutingCore | None = None,
                 profiles: Mapping[str, ModelProfile] | None = None) -> None:
        """``router`` replaces the default single-hub Router (e.g. a :class:`HubRouter`);
        ``profiles`` gives backends by name an engine profile the registry lacks (specialised or
        calibrated models); the others use ``get_profile(profile or model)``."""
        profiles = profiles or {}
        unknown = sorted(set(profiles) - {b.name for b in backends})
        if unknown:
            raise ValueError(f"engine profiles given for unknown backends {unknown}")
        self.backends = backends
        self.router: RoutingCore = router or Router(backends, policy, settings or RouterSettings(seed=seed))
        self.batching = batching or BatchingRule()
        self.down: set[str] = set()
        self.failovers = 0  # attempts refused by a backend taken down
        self.failed = 0  # requests no backend of their ranking accepted
        self.engines = {b.name: EngineCore(profiles.get(b.name) or get_profile(b.profile or b.model),
                                           max_num_seqs=b.capacity,
                                           gpu_memory_utilization=gpu_memory_utilization, seed=seed)
                        for b in backends}
        self.now = 0.0

    def run(self, dialogues: Sequence[Dialogue], *, concurrency: int = 8, max_tokens: int = 64,
            turns: int | None = None, report: BuyerReport | None = None,
            on_request: Callable[[RequestLog], None] | None = None) -> list[RequestLog]:
        """Drive every dialogue to its end; returns one log per request in finishing order."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        run = _Run(self, list(dialogues), max_tokens, turns, report or BuyerReport())
        for _ in range(min(concurrency, len(run.waiting))):
            run.start_dialogue()
        while run.queue or run.in_flight:
            flush_at = self.batching.due(len(run.queue), run.first_queued, run.last_queued, self.now)
            engine_at = min(e.next_event_time() for e in self.engines.values())
            t = min(flush_at, engine_at)
            if t == math.inf:
                raise RuntimeError("simulation stalled: requests in flight but no engine event")
            self.now = max(self.now, t)
            for name, engine in self.engines.items():
                for result in engine.advance(self.now):
                    log = run.finished(name, result)
                    if on_request is not None:
                        on_request(log)
            if run.queue and self.now >= flush_at - 1e-12:
                run.flush(self.batching.max_batch)
        return run.logs

    def take_down(self, backend: str, down: bool = True) -> None:
        """Make ``backend``'s engine refuse new requests (or accept them again); in-flight ones finish."""
        if backend not in self.engines:
            raise KeyError(f"unknown backend {backend!r}")
        (self.down.add if down else self.down.discard)(backend)

    def dispatch(self, decision: Decision) -> Dispatch | None:
        """Hand a decided request to the first backend of its ranking that accepts it.

        Returns its dispatch, or None when every backend refused it (the request failed).
        """
        req = decision.request
        trip = Dispatch(self.router, decision, lambda: self.now)
        for backend in trip.ranking:
            trip.attempt(backend)
            if backend in self.down:
                trip.abandon(backend)
                self.failovers += 1
                continue
            self.engines[backend].submit(EngineRequest(
                request_id=req.request_id, prompt=req.prompt, max_tokens=req.max_tokens,
                domain=req.domain or "default", gold_answer=req.gold_answer), self.now)
            return trip
        trip.fail("every backend of the ranking refused the request")
        self.failed += 1
        return None

    def complete(self, trip: Dispatch, backend: str, result: EngineResult) -> RequestLog:
        """Feed an engine result back to the router and log it."""
        decision = trip.decision
        req = decision.request
        obs = Observation(request_id=req.request_id, backend=backend, ok=True, ttft_s=result.ttft,
                          latency_s=result.latency, prompt_tokens=result.prompt_tokens,
                          cached_tokens=result.cached_tokens, completion_tokens=result.completion_tokens,
                          text=result.text, correct=result.correct)
        record = trip.succeed(obs)
        assert record is not None
        log = RequestLog(
            request_id=req.request_id, dialogue_id=req.session_id, turn=req.turn, domain=req.domain or "",
            backend=backend, paid=decision.paid, prompt_tokens=result.prompt_tokens,
            cached_tokens=result.cached_tokens, completion_tokens=result.completion_tokens,
            ttft_s=result.ttft, latency_s=result.latency,
            queue_wait_s=max(0.0, result.scheduled_time - result.arrival), cost=record.cost,
            payment=record.payment,
            surplus=record.surplus, correct=result.correct, predicted_latency_s=decision.predicted_latency_s,
            predicted_cost=decision.predicted_cost, predicted_quality=decision.predicted_quality,
            finished_at=self.now)
        return log


class _Run:
    """Book-keeping of one :meth:`InProcessCluster.run`: dialogues, queue, requests in flight."""

    def __init__(self, cluster: InProcessCluster, dialogues: list[Dialogue], max_tokens: int,
                 turns: int | None, report: BuyerReport) -> None:
        self.cluster = cluster
        self.waiting = dialogues[::-1]
        self.max_tokens = max_tokens
        self.turns = turns
        self.report = report
        self.replies: dict[str, list[str]] = {}
        self.dialogue_of: dict[str, Dialogue] = {}
        self.queue: list[RouteRequest] = []
        self.first_queued = self.last_queued = math.inf
        self.in_flight: dict[str, Dispatch] = {}
        self.logs: list[RequestLog] = []

    def start_dialogue(self) -> None:
        """Take the next waiting dialogue and queue its first turn."""
        d = self.waiting.pop()
        self.replies[d.dialogue_id] = []
        self.enqueue(d)

    def enqueue(self, d: Dialogue) -> None:
        """Queue the next turn of ``d`` for the micro-batcher."""
        replies = self.replies[d.dialogue_id]
        turn = len(replies) + 1
        prompt = render_chat(dialogue_messages(d, turn=turn, replies=replies))
        req = RouteRequest(
            request_id=f"{d.dialogue_id}-t{turn}", prompt=prompt, prompt_tokens=count_tokens(prompt),
            max_tokens=self.max_tokens, session_id=d.dialogue_id, turn=turn, domain=d.domain,
            source=d.source, buyer="sim", report=self.report, arrival=self.cluster.now,
            gold_answer=d.turns[turn - 1].answer)
        self.dialogue_of[req.request_id] = d
        if not self.queue:
            self.first_queued = self.cluster.now
        self.last_queued = self.cluster.now
        self.queue.append(req)

    def flush(self, max_batch: int) -> None:
        """Route one micro-batch and dispatch each request along its ranking."""
        batch, self.queue = self.queue[:max_batch], self.queue[max_batch:]
        now = self.cluster.now
        self.first_queued = now if self.queue else math.inf
        for decision in self.cluster.router.route(batch, now):
            if not decision.backends:
                raise RuntimeError(f"no backend can serve {decision.request.request_id}")
            trip = self.cluster.dispatch(decision)
            if trip is not None:
                self.in_flight[decision.request.request_id] = trip
            else:  # the dialogue cannot go on without this turn's reply
                self.dialogue_of.pop(decision.request.request_id)
                self.next_dialogue()

    def finished(self, backend: str, result: EngineResult) -> RequestLog:
        """Account for a finished request and queue the dialogue's next turn, or a new dialogue."""
        trip = self.in_flight.pop(result.request_id)
        log = self.cluster.complete(trip, backend, result)
        self.logs.append(log)
        d = self.dialogue_of.pop(result.request_id)
        replies = self.replies[d.dialogue_id]
        replies.append(result.text)
        limit = min(len(d.turns), self.turns) if self.turns else len(d.turns)
        if len(replies) < limit:
            self.enqueue(d)
        else:
            self.next_dialogue()
        return log

    def next_dialogue(self) -> None:
        """A dialogue ended: start the next waiting one, if any."""
        if self.waiting:
            self.start_dialogue()
