"""Plain data passed between the Router core, the live app and the in-process cluster.

Kept free of any web framework or numpy so that every face of the gateway (HTTP, virtual
clock, tests) speaks the same small vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the view's module needs the core's load and prefix ledger, not the reverse
    from mercato.gateway.core.replicas import ReplicaView

AUTO_MODEL = "mercato"  # the model name that lets the gateway pick any backend


@dataclass(frozen=True)
class BackendSpec:
    """One OpenAI-compatible backend the hub can route to; prices are credits per token."""

    name: str
    model: str
    capacity: int
    price_input: float
    price_cached_input: float
    price_output: float
    url: str | None = None
    api_key: str | None = None
    profile: str | None = None
    domains: tuple[str, ...] = ()
    hub: str | None = None

    def cost(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
        """Observed service cost, IEMAS Eq. 6: miss, hit and output tokens at their prices."""
        return (self.price_input * (prompt_tokens - cached_tokens)
                + self.price_cached_input * cached_tokens
                + self.price_output * completion_tokens)


@dataclass(frozen=True)
class BuyerReport:
    """What a buyer declares: value scale (credits), quality-vs-latency weight, optional deadline."""

    bid: float = 1.0
    delta: float = 0.5
    deadline_ms: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.bid, int | float) and math.isfinite(self.bid) and self.bid >= 0):
            raise ValueError(f"bid must be a finite number >= 0, got {self.bid!r}")
        if not (isinstance(self.delta, int | float) and 0.0 <= self.delta <= 1.0):
            raise ValueError(f"delta must be a number in [0, 1], got {self.delta!r}")
        if self.deadline_ms is not None and not (
                isinstance(self.deadline_ms, int | float) and self.deadline_ms > 0):
            raise ValueError(f"deadline_ms must be a number > 0, got {self.deadline_ms!r}")


@dataclass
class RouteRequest:
    """One chat request as the router sees it; ``prompt`` is ``render_chat(messages)``."""

    request_id: str
    prompt: str
    prompt_tokens: int
    max_tokens: int
    session_id: str
    turn: int
    domain: str | None
    source: str | None
    buyer: str
    report: BuyerReport
    arrival: float
    stream: bool = False
    model: str = AUTO_MODEL
    gold_answer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None  # a chat's messages, for engines with their own template

    @property
    def any_model(self) -> bool:
        """True when the buyer asked for the automatic ``mercato`` model (any backend may serve)."""
        return self.model == AUTO_MODEL


@dataclass
class Decision:
    """Where a request goes: ``backends`` ranked (primary, then failover order) and its price."""

    request: RouteRequest
    backends: list[str]
    paid: bool
    payment: float
    externality: float
    predicted_latency_s: float
    predicted_cost: float
    predicted_quality: float
    welfare: float


@dataclass
class Observation:
    """What actually happened to a request, after any failover."""

    request_id: str
    backend: str
    ok: bool
    ttft_s: float | None
    latency_s: float | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    text: str
    correct: bool | None = None
    error: str | None = None


@dataclass(frozen=True)
class LedgerRecord:
    """One accounting row per routed request, written exactly once."""

    request_id: str
    ts: float
    buyer: str
    backend: str
    model: str
    policy: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost: float
    payment: float
    surplus: float
    paid: bool


class AccountingStore(Protocol):
    """Durable, exactly-once store of :class:`LedgerRecord` rows (SQLite, PostgreSQL, ...)."""

    def record(self, rec: LedgerRecord) -> bool:
        """Store ``rec``; False when its request id was already recorded."""
        ...

    def summary(self) -> dict[str, Any]:
        """Totals per backend and overall, with the weak-budget-balance check."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class RoutingCore(Protocol):
    """What the live app and the in-process cluster need from a router: one hub or many."""

    def route(self, batch: list[RouteRequest], now: float) -> list[Decision]:
        """Decisions for a micro-batch, in batch order."""
        ...

    def started(self, decision: Decision, backend: str, now: float) -> None:
        """The request is in flight at ``backend``."""
        ...

    def release(self, decision: Decision, backend: str, now: float) -> None:
        """``backend`` gave the request up (failover)."""
        ...

    def finish(self, decision: Decision, obs: Observation, now: float) -> LedgerRecord | None:
        """Learn from the outcome and account for it."""
        ...

    def learn(self) -> int:
        """Learn from the requests finished since the last call, when learning is deferred."""
        ...

    def calibrate(self, backend: str, uncached_tokens: int, ttft_s: float) -> None:
        """A TTFT measured at an idle backend for a cold prompt, before any traffic."""
        ...

    def set_health(self, backend: str, healthy: bool) -> None:
        """Circuit-breaker state of a backend."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """Load, health and totals for reports and /metrics."""
        ...

    def replica_view(self) -> ReplicaView:
        """Its load and prefix state, for replicas of the gateway that share them."""
        ...
