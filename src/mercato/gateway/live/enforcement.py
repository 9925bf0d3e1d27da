"""Budgets and rate limits applied to requests: what each reserves, and how a refusal is answered.

A request is checked twice. At admission, before it enters a micro-batch (a refused request
must not take part in an auction), it reserves one request and ``prompt + max_tokens`` tokens of
its buyer's windows, and the dearest price any backend that could serve it asks for that many
tokens. Once the auction has priced it, the reservation becomes its exact worst case: the VCG
externality it was charged plus the dearest of its ranked backends' prices at ``max_tokens``
(payment = observed cost + externality, and the cost can only come from one of those). A budget
that cannot hold that refuses the request then, before anything is sent to a backend. When the
request ends the reservation settles to the ledger's payment and the tokens really used.

Refusals: a rate limit is 429 with ``Retry-After`` (type ``requests`` or ``tokens``, code
``rate_limit_exceeded``, as OpenAI words them); a spent budget is 402 Payment Required (type and
code ``insufficient_quota``) with ``x-should-retry: false``: it will not pass by waiting, so the
``openai`` client must not retry it, and 402 (unlike 403) tells the client that paying, not a
different key or model, is what it takes.
"""

from __future__ import annotations

import asyncio
import math

from mercato.gateway.core.lifecycle import Dispatch
from mercato.gateway.core.types import LedgerRecord, RouteRequest
from mercato.gateway.live.api_keys import KeyRing
from mercato.gateway.live.config import GatewayConfig
from mercato.gateway.live.errors import APIError
from mercato.gateway.live.limits import Limiter, LimitExceeded, LocalLimiter, RateWindows, Reservation
from mercato.gateway.live.limits_redis import RedisLimiter
from mercato.gateway.live.metrics import GatewayMetrics

RESERVATION = "reservation"  # the key of a request's Reservation in RouteRequest.extra


def build_limiter(config: GatewayConfig) -> Limiter:
    """Redis limits when ``state.redis_url`` is set (each replica's fallback taking
    1/``limits.replicas`` of them), else in-process ones."""
    windows = RateWindows(config.limits.window_s)
    if config.state.redis_url is None:
        return LocalLimiter(windows)
    return RedisLimiter(config.state.redis_url, windows, config.limits.replicas,
                        config.limits.reservation_ttl_s)


class Enforcement:
    """The gateway's budgets and rate limits: keys, the limiter, and the requests' reservations."""

    def __init__(self, config: GatewayConfig, metrics: GatewayMetrics) -> None:
        self.limiter = build_limiter(config)
        shared = self.limiter if isinstance(self.limiter, RedisLimiter) else None
        self.keys = KeyRing(config.api_keys, config.limits, shared)
        if shared is not None:
            shared.on_recovery.append(self.keys.restore)
            metrics.watch_shared_limits(lambda: float(shared.shared))
        self.metrics = metrics
        self.window_s = config.limits.window_s
        # per backend: its model and the dearest of its input prices, and its output price
        self._prices = {b.name: (b.model, max(b.prices.input, b.prices.cached_input), b.prices.output)
                        for b in config.backends}
        for buyer, limits in config.limits.buyers.items():
            if limits.budget is not None:
                metrics.watch_budget(buyer, lambda b=buyer, total=limits.budget:
                                     total - self.limiter.spent(b))
        self._settling: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect the limiter and read the runtime keys."""
        await self.limiter.start()
        await self.keys.start()

    async def stop(self) -> None:
        """Finish pending settlements, then stop."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        await self.keys.stop()
        await self.limiter.stop()

    async def admit(self, req: RouteRequest) -> None:
        """Reserve the request's worst case before routing; APIError 429 or 402 when it does not fit."""
        limits = self.keys.limits(req.buyer)
        if not limits.limited:
            return
        bound = 0.0 if limits.budget is None else max(
            (self._charge(name, req) for name, (model, _, _) in self._prices.items()
             if req.any_model or model == req.model), default=0.0)
        try:
            res = await self.limiter.reserve(req.buyer, limits, bound, req.prompt_tokens + req.max_tokens)
        except LimitExceeded as err:
            raise self.refusal(err) from None
        req.extra[RESERVATION] = res

    async def priced(self, dispatch: Dispatch) -> None:
        """Resize the reservation to the auction's worst case; APIError 402 when the budget cannot hold it."""
        res: Reservation | None = dispatch.request.extra.get(RESERVATION)
        if res is None or res.limits.budget is None:
            return
        decision = dispatch.decision
        externality = decision.externality if decision.paid else 0.0
        bound = externality + max((self._charge(name, decision.request) for name in decision.backends),
                                  default=0.0)
        try:
            await self.limiter.resize(res, bound)
        except LimitExceeded as err:
            raise self.refusal(err) from None

    def _charge(self, backend: str, req: RouteRequest) -> float:
        """The most ``backend`` can cost for the request: every prompt token uncached, ``max_tokens`` out."""
        _, input_price, output_price = self._prices[backend]
        return input_price * req.prompt_tokens + output_price * req.max_tokens

    def release(self, req: RouteRequest, record: LedgerRecord | None, tokens: int) -> None:
        """Settle the request's reservation to its payment (none if not served), off the response path."""
        res: Reservation | None = req.extra.pop(RESERVATION, None)
        if res is None:
            return
        payment = record.payment if record is not None else 0.0
        task = asyncio.get_running_loop().create_task(self.limiter.settle(res, payment, tokens))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def refusal(self, err: LimitExceeded) -> APIError:
        """The HTTP answer to a refused request, counted by buyer and reason."""
        self.metrics.limit_rejections.labels(self.metrics.buyer_label(err.buyer), err.reason).inc()
        if err.retry_after_s is None:
            return APIError(402, f"buyer {err.buyer!r} has used {err.used:.6g} of its budget of "
                            f"{err.limit:.6g} credits; this request may cost up to {err.wanted:.6g}",
                            code="insufficient_quota", error_type="insufficient_quota",
                            headers={"x-should-retry": "false"})
        wait = max(1, math.ceil(err.retry_after_s))
        what = "requests" if err.reason == "rpm" else "tokens"
        return APIError(429, f"buyer {err.buyer!r} reached its limit of {err.limit:g} {what} per "
                        f"{self.window_s:g} s (used {err.used:g}, this request needs {err.wanted:g}); "
                        f"retry after {wait} s",
                        code="rate_limit_exceeded", error_type=what,
                        headers={"retry-after": str(wait)})
