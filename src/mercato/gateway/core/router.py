"""The Router core: micro-batch -> features -> predictions -> policy -> decisions -> feedback.

No web framework and no clock of its own: callers pass ``now`` (wall seconds live, virtual
seconds in-process), so the same object runs behind FastAPI and inside experiments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mercato.engine.chat import END, GENERATION_PROMPT
from mercato.gateway.core.affinity import CacheAffinity
from mercato.gateway.core.features import UNCACHED, domain_index
from mercato.gateway.core.kv_index import KVIndex
from mercato.gateway.core.load import BackendLoad
from mercato.gateway.core.market import Market, MarketBuilder
from mercato.gateway.core.policies import Policy, make_policy
from mercato.gateway.core.predictors import PredictorBank, PredictorSettings
from mercato.gateway.core.prefix import PrefixLedger
from mercato.gateway.core.quality import QualityTracker
from mercato.gateway.core.replicas import ReplicaView, RouterPart
from mercato.gateway.core.types import (
    AccountingStore,
    BackendSpec,
    Decision,
    LedgerRecord,
    Observation,
    RouteRequest,
)
from mercato.gateway.core.valuation import ValuationSettings, realised_value

MAX_FAILOVER = 3  # alternates tried after the primary backend


@dataclass(frozen=True)
class RouterSettings:
    """Knobs of the Router core (the YAML config maps onto these)."""

    valuation: ValuationSettings = field(default_factory=ValuationSettings)
    predictor: PredictorSettings = field(default_factory=PredictorSettings)
    max_sessions_per_backend: int = 50_000
    seed: int = 0
    congestion: bool = True  # price each round's own queueing in the auction (slot penalties)
    # Queue what finished requests teach the predictors until ``Router.learn()`` (the live
    # gateway learns between requests, off the response path); False learns inside ``finish``.
    defer_learning: bool = False


@dataclass(frozen=True)
class _BatchEstimates:
    """A routed batch's features and predictions, kept until its last request finishes."""

    features: NDArray[np.float64]  # (N, M, F)
    affinity: NDArray[np.float64]  # (N, M)
    latency: NDArray[np.float64]  # (N, M) predictions at decision time
    cost: NDArray[np.float64]
    quality: NDArray[np.float64]


@dataclass(frozen=True)
class _Sent:
    """A request in flight at one backend: the load it met and its place on the prefill clock."""

    met_load: tuple[float, float]  # (in flight, prefill wait in s) when it was sent
    sent_at: float
    due: float  # when its first token was due by the clock
    shift: float  # the clock's running correction then
    prefill_s: float  # what it added to the clock


@dataclass(frozen=True)
class _Lesson:
    """What one served request teaches the predictors, the QoS tracker and the policy."""

    request: RouteRequest
    observation: Observation
    backend: int
    features: NDArray[np.float64]  # (F,) its row at the backend that served it
    met_load: tuple[float, float] | None
    cost: float
    predicted: tuple[float, float, float]  # latency, cost, quality at decision time


@dataclass
class _Pending:
    """What the router remembers about a routed request until it finishes: its batch row."""

    batch: _BatchEstimates
    row: int
    sent: dict[int, _Sent] = field(default_factory=dict)  # backends it is in flight at


@dataclass
class RouterTotals:
    """Running totals for reports: sums over finished requests."""

    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0
    payments: float = 0.0
    surplus: float = 0.0
    welfare: float = 0.0
    correct: int = 0
    judged: int = 0


class Router:
    """Routes micro-batches with one policy and learns from every finished request.

    ``policy`` is a name from the registry or a policy object; ``predictors`` replaces the
    default online predictor bank (experiments compare predictor variants this way); ``kv_index``
    gives the exact cache state of the backends whose KV events someone feeds into it.
    """

    def __init__(
        self,
        backends: list[BackendSpec],
        policy: str | Policy = "auction",
        settings: RouterSettings | None = None,
        accounting: AccountingStore | None = None,
        predictors: PredictorBank | None = None,
        kv_index: KVIndex | None = None,
    ) -> None:
        if not backends:
            raise ValueError("a router needs at least one backend")
        names = [b.name for b in backends]
        if len(set(names)) != len(names):
            raise ValueError(f"backend names must be unique, got {names}")
        self.backends = list(backends)
        self.names = names
        self.index = {n: i for i, n in enumerate(names)}
        self.settings = settings or RouterSettings()
        self.policy = (
            make_policy(policy, len(backends), self.settings.seed) if isinstance(policy, str) else policy
        )
        self.accounting = accounting
        self.ledger = PrefixLedger(names, self.settings.max_sessions_per_backend)
        self.affinity = CacheAffinity(names, self.ledger, kv_index)
        self.predictors = predictors or PredictorBank(self.backends, self.settings.predictor)
        self.quality = QualityTracker()
        self.load = BackendLoad([b.capacity for b in backends])
        self._markets = MarketBuilder(self.backends, self.load, self.affinity, self.predictors,
                                      self.settings.valuation, np.random.default_rng(self.settings.seed),
                                      self.settings.congestion)
        self._pending: dict[str, _Pending] = {}
        self._lessons: list[_Lesson] = []
        self.totals = RouterTotals()

    # ---- routing -------------------------------------------------------------------------
    def market(self, batch: list[RouteRequest], now: float = 0.0) -> Market:
        """The market a batch would be routed in at ``now``, built without routing it."""
        return self._markets.build(batch, now)

    def route(self, batch: list[RouteRequest], now: float) -> list[Decision]:
        """Decide a ranked backend list and a price for every request of the micro-batch.

        Each request counts as in flight at its primary from the moment it is decided, not when
        it is sent: the next batch may be routed before this one's requests are on the wire,
        and without the reservation back-to-back small batches all see the same idle backend
        and herd onto it.
        """
        if not batch:
            return []
        self.load.arrived(len(batch), now)
        market = self._markets.build(batch, now)
        ctx = market.context
        alloc = self.policy.allocate(ctx)
        welfare = ctx.welfare
        ranked, count = self._rankings(alloc.assignment, welfare, ctx.allowed)
        rows = np.arange(len(batch))
        routed = count > 0
        first = np.where(routed, ranked[:, 0], 0)
        p = ctx.predictions
        cost = ctx.costs[rows, first]
        externality = np.where(alloc.paid, alloc.externality, 0.0)
        estimates = _BatchEstimates(market.features, ctx.affinity, p.latency_s, p.cost, p.quality)
        names = self.names
        decisions = []
        for i, (req, order, k, paid, pay, ext, lat, c, q, w) in enumerate(zip(
                batch, ranked.tolist(), count.tolist(), alloc.paid.tolist(),
                np.where(routed, cost + externality, 0.0).tolist(), externality.tolist(),
                p.latency_s[rows, first].tolist(), cost.tolist(), p.quality[rows, first].tolist(),
                np.where(routed, welfare[rows, first], np.nan).tolist(), strict=True)):
            self._pending[req.request_id] = _Pending(estimates, i)
            decision = Decision(req, [names[j] for j in order[:k]], paid, pay, ext, lat, c, q, w)
            if k:
                self.started(decision, decision.backends[0], now)
            decisions.append(decision)
        return decisions

    @staticmethod
    def _uncached(pending: _Pending, backend: int) -> float:
        return float(pending.batch.features[pending.row, backend, UNCACHED])

    @property
    def pending(self) -> int:
        """Requests routed and not yet finished."""
        return len(self._pending)

    @staticmethod
    def _rankings(assignment: NDArray[np.int64], welfare: NDArray[np.float64],
                  allowed: NDArray[np.bool_]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Per request: the primary, then up to MAX_FAILOVER other allowed backends by welfare.

        Returns an (N, K) matrix whose row i holds request i's ranking in its first
        ``count[i]`` entries.
        """
        m = welfare.shape[1]
        keep = min(m, MAX_FAILOVER + 1)
        score = np.where(allowed & ~np.isnan(welfare), welfare, -np.inf)
        rows = np.flatnonzero(assignment >= 0)
        primary = assignment[rows]
        usable = allowed[rows, primary]
        score[rows[usable], primary[usable]] = np.inf  # the allocation's choice first, then by welfare
        if keep < m:
            top = np.argpartition(-score, keep - 1, axis=1)[:, :keep]
            order = np.argsort(-np.take_along_axis(score, top, axis=1), axis=1, kind="stable")
            ranked = np.take_along_axis(top, order, axis=1)
        else:
            ranked = np.argsort(-score, axis=1, kind="stable")
        return ranked, np.minimum((score > -np.inf).sum(axis=1), keep)

    # ---- lifecycle -----------------------------------------------------------------------
    def started(self, decision: Decision, backend: str, now: float) -> None:
        """The request is now in flight at ``backend``: its primary from :meth:`route` on, or the
        backend it failed over to; a second call for the same backend changes nothing."""
        j = self.index[backend]
        pending = self._pending.get(decision.request.request_id)
        if pending is not None and j not in pending.sent:
            load = self.load
            met = (float(load.busy()[j]), float(load.prefill_wait(now)[j]))
            t0, rate = self.predictors.prefill_clock(j)
            prefill_s = rate * self._uncached(pending, j)
            prefill_end = load.dispatched(j, now, prefill_s)
            pending.sent[j] = _Sent(met, now, prefill_end + t0, float(load.shift[j]), prefill_s)

    def release(self, decision: Decision, backend: str, now: float) -> None:
        """``backend`` gave up on the request (failover): it no longer counts as in flight there,
        and the prefill it was queued for will not happen (the clock moves back by it)."""
        j = self.index[backend]
        pending = self._pending.get(decision.request.request_id)
        if pending is not None and j in pending.sent:
            self.load.released(j)
            self.load.resync(j, now, -pending.sent.pop(j).prefill_s)

    def finish(self, decision: Decision, obs: Observation, now: float) -> LedgerRecord | None:
        """Learn from what happened and write the accounting record (None when it failed)."""
        req = decision.request
        pending = self._pending.pop(req.request_id, None)
        if pending is None:
            raise ValueError(f"request {req.request_id!r} is not pending (finished twice?)")
        est, i = pending.batch, pending.row
        for j in pending.sent:
            self.load.released(j)
        if not obs.ok:
            self.totals.failed += 1
            return None
        j = self.index[obs.backend]
        sent = pending.sent.get(j)
        if obs.ttft_s is not None and sent is not None:
            due = sent.due + float(self.load.shift[j]) - sent.shift  # with corrections made since
            self.load.resync(j, now, sent.sent_at + obs.ttft_s - due)
        spec = self.backends[j]
        cost = spec.cost(obs.prompt_tokens, obs.cached_tokens, obs.completion_tokens)
        lesson = _Lesson(req, obs, j, est.features[i, j], sent.met_load if sent is not None else None, cost,
                         (float(est.latency[i, j]), float(est.cost[i, j]), float(est.quality[i, j])))
        if self.settings.defer_learning:
            self._lessons.append(lesson)
        else:
            self._learn_from(lesson)
        # The prefix ledger is not deferred: a dialogue's next turn may arrive at once.
        self.ledger.observe(
            obs.backend,
            req.session_id,
            req.prompt + GENERATION_PROMPT + obs.text + END,
            affinity=float(est.affinity[i, j]),
            prompt_tokens=obs.prompt_tokens,
            cached_tokens=obs.cached_tokens,
        )
        externality = decision.externality if decision.paid else 0.0
        record = LedgerRecord(
            request_id=req.request_id,
            ts=now,
            buyer=req.buyer,
            backend=obs.backend,
            model=spec.model,
            policy=self.policy.name,
            prompt_tokens=obs.prompt_tokens,
            cached_tokens=obs.cached_tokens,
            completion_tokens=obs.completion_tokens,
            cost=cost,
            payment=cost + externality,
            surplus=externality,
            paid=decision.paid,
        )
        if self.accounting is not None:
            self.accounting.record(record)
        self._tally(req, obs, record, float(est.quality[i, j]))
        return record

    def learn(self) -> int:
        """Learn from the requests finished since the last call (``defer_learning``); returns how many.

        The predictors are compiled for the next batch here, so that routing it does not.
        """
        lessons, self._lessons = self._lessons, []
        for lesson in lessons:
            self._learn_from(lesson)
        if lessons:
            self.predictors.refresh()
        return len(lessons)

    def _learn_from(self, lesson: _Lesson) -> None:
        req, obs, j = lesson.request, lesson.observation, lesson.backend
        self.predictors.learn(j, lesson.features, domain_index(req.domain), obs.ttft_s, lesson.cost,
                              obs.completion_tokens, obs.correct, met_load=lesson.met_load)
        latency, cost, quality = lesson.predicted
        self.quality.add(latency, obs.ttft_s, cost, lesson.cost, quality, obs.correct)
        self.policy.observe(req, j, obs)

    def _tally(
        self, req: RouteRequest, obs: Observation, record: LedgerRecord, expected_quality: float
    ) -> None:
        t = self.totals
        t.requests += 1
        t.prompt_tokens += obs.prompt_tokens
        t.cached_tokens += obs.cached_tokens
        t.cost += record.cost
        t.payments += record.payment
        t.surplus += record.surplus
        t.welfare += (
            realised_value(
                req.report.bid,
                req.report.delta,
                obs.correct,
                obs.ttft_s or 0.0,
                self.settings.valuation,
                expected_quality,
            )
            - record.cost
        )
        if obs.correct is not None:
            t.judged += 1
            t.correct += int(obs.correct)

    def calibrate(self, backend: str, uncached_tokens: int, ttft_s: float) -> None:
        """A start-up probe's TTFT at ``backend`` while idle, for ``uncached_tokens`` of cold prompt."""
        self.predictors.calibrate(self.index[backend], uncached_tokens / 1000.0, ttft_s)

    def can_serve(self, request: RouteRequest) -> NDArray[np.bool_]:
        """(M,) mask of healthy backends serving the model the request asked for."""
        return self._markets.can_serve(request)

    def set_health(self, backend: str, healthy: bool) -> None:
        """Circuit breaker state: an unhealthy backend is offered no requests."""
        self.load.healthy[self.index[backend]] = healthy

    def replica_view(self) -> ReplicaView:
        """Its load and prefix ledger, for gateway replicas that share them."""
        return ReplicaView([RouterPart(self.names, self.load, self.ledger)])

    def snapshot(self) -> dict[str, Any]:
        """Per-backend load and health, and hub totals (for /metrics and reports)."""
        load = self.load
        rates, busy = load.backend_rates(), load.busy()
        return {
            "policy": self.policy.name,
            "backends": {
                n: {
                    "inflight": float(busy[i]),
                    "healthy": bool(load.healthy[i]),
                    "capacity": int(load.capacity[i]),
                    "rate": float(rates[i]),
                }
                for i, n in enumerate(self.names)
            },
            "pending": len(self._pending),
            "unlearned": len(self._lessons),
            "ledger_sessions": len(self.ledger),
            "ledger_resyncs": self.ledger.resyncs,
            "kv_exact": self.affinity.exact(),
            "totals": vars(self.totals).copy(),
            "nmae": self.quality.nmae(),
        }
