"""Per-buyer budgets and rate limits: the interface, and the in-process implementation.

Reserve, then settle. A request reserves its worst-case charge against the buyer's budget and
its worst-case tokens against the token window when it is admitted, before it can cost anything;
what it really cost replaces the reservation when it ends. A budget is therefore never
overspent by requests running at once, whichever replica admits them, as long as each
reservation bounds its request's charge.

Rate windows are fixed: window ``k`` covers ``[k * window_s, (k + 1) * window_s)`` of the wall
clock. A sliding window would smooth the edge (a buyer may use two windows' worth around a
boundary), but a fixed one is one counter per window, the same in every replica and in Redis,
and tells a refused client exactly when it will be admitted (``Retry-After``: the window's end).

:class:`LocalLimiter` keeps the counters in this process (one worker without Redis, and each
replica's fallback while Redis is unreachable); :mod:`mercato.gateway.live.limits_redis` keeps
them in Redis for replicas that share them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from mercato.gateway.live.config import BuyerLimits

Reason = Literal["budget", "rpm", "tpm"]
REASONS: tuple[Reason, ...] = ("budget", "rpm", "tpm")


class LimitExceeded(Exception):
    """A request the buyer's limits refuse; ``retry_after_s`` is None when waiting will not help."""

    def __init__(self, reason: Reason, buyer: str, limit: float, used: float, wanted: float,
                 retry_after_s: float | None) -> None:
        super().__init__(f"{buyer} over its {reason} limit {limit:g} (used {used:g}, wanted {wanted:g})")
        self.reason: Reason = reason
        self.buyer = buyer
        self.limit = limit
        self.used = used
        self.wanted = wanted
        self.retry_after_s = retry_after_s


@dataclass
class Reservation:
    """What one admitted request holds until it settles: credits of budget, tokens of its window.

    ``local``: made on this process's counters (always for :class:`LocalLimiter`; for Redis,
    while it was unreachable).
    """

    buyer: str
    limits: BuyerLimits
    credits: float
    tokens: int
    window: int
    local: bool = True


class Limiter(Protocol):
    """Where budgets and rate limits are kept and enforced."""

    async def start(self) -> None:
        """Connect (if anything) and start background work."""
        ...

    async def stop(self) -> None:
        """Stop background work and disconnect."""
        ...

    async def reserve(self, buyer: str, limits: BuyerLimits, credits: float, tokens: int) -> Reservation:
        """Count one request and hold ``credits`` and ``tokens`` for it; raises :class:`LimitExceeded`."""
        ...

    async def resize(self, res: Reservation, credits: float) -> None:
        """Hold ``credits`` instead, once the price is known; raises :class:`LimitExceeded` (budget)
        when more does not fit, and then holds what it held before."""
        ...

    async def settle(self, res: Reservation, credits: float, tokens: int) -> None:
        """The request ended: charge ``credits``, count ``tokens``, release the reservation."""
        ...

    def spent(self, buyer: str) -> float:
        """Credits the buyer has been charged, as last known here (for the remaining-budget gauge)."""
        ...


@dataclass
class _Window:
    index: int = -1
    requests: int = 0
    tokens: int = 0


@dataclass
class _Account:
    spent: float = 0.0
    reserved: float = 0.0
    window: _Window = field(default_factory=_Window)


class RateWindows:
    """The fixed-window clock: which window a moment is in, and how long until the next one."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self.clock = clock

    def current(self) -> int:
        """The index of the window now."""
        return math.floor(self.clock() / self.window_s)

    def retry_after_s(self, index: int) -> float:
        """Seconds until window ``index`` ends."""
        return max(0.0, (index + 1) * self.window_s - self.clock())


def check_admission(buyer: str, limits: BuyerLimits, spent: float, reserved: float, requests: int,
                    tokens_used: int, credits: float, tokens: int, retry_after_s: float) -> None:
    """Raise :class:`LimitExceeded` when one more request of ``credits`` and ``tokens`` does not fit.

    Budget first (waiting does not cure it), then requests, then tokens. A request larger than the
    whole token limit is admitted alone in an otherwise unused window, rather than never.
    """
    if limits.budget is not None and spent + reserved + credits > limits.budget:
        raise LimitExceeded("budget", buyer, limits.budget, spent + reserved, credits, None)
    if limits.rpm is not None and requests + 1 > limits.rpm:
        raise LimitExceeded("rpm", buyer, limits.rpm, requests, 1, retry_after_s)
    if limits.tpm is not None and tokens_used > 0 and tokens_used + tokens > limits.tpm:
        raise LimitExceeded("tpm", buyer, limits.tpm, tokens_used, tokens, retry_after_s)


class LocalLimiter:
    """Budgets and rate limits in this process's memory: exact for one worker, lost on restart."""

    def __init__(self, windows: RateWindows) -> None:
        self.windows = windows
        self._accounts: dict[str, _Account] = {}
        self._window = -1  # the latest window seen

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to disconnect."""

    def _account(self, buyer: str) -> _Account:
        index = self.windows.current()
        if index != self._window:
            # a new window: forget buyers that hold and owe nothing (their counts are of past windows),
            # so that names clients make up (the body's user, without API keys) do not pile up
            self._window = index
            self._accounts = {b: a for b, a in self._accounts.items() if a.spent or a.reserved}
        account = self._accounts.get(buyer)
        if account is None:
            account = self._accounts[buyer] = _Account()
        if account.window.index != index:
            account.window = _Window(index)
        return account

    async def reserve(self, buyer: str, limits: BuyerLimits, credits: float, tokens: int) -> Reservation:
        """Count and hold, or raise :class:`LimitExceeded` and change nothing."""
        return self.reserve_now(buyer, limits, credits, tokens)

    def reserve_now(self, buyer: str, limits: BuyerLimits, credits: float, tokens: int) -> Reservation:
        """:meth:`reserve` without the event loop (the Redis limiter's fallback calls it)."""
        account = self._account(buyer)
        w = account.window
        check_admission(buyer, limits, account.spent, account.reserved, w.requests, w.tokens, credits, tokens,
                        self.windows.retry_after_s(w.index))
        w.requests += 1
        w.tokens += tokens
        account.reserved += credits
        return Reservation(buyer, limits, credits, tokens, w.index)

    async def resize(self, res: Reservation, credits: float) -> None:
        """Hold ``credits`` instead of what the reservation holds."""
        self.resize_now(res, credits)

    def resize_now(self, res: Reservation, credits: float) -> None:
        """:meth:`resize` without the event loop."""
        account = self._account(res.buyer)
        extra = credits - res.credits
        budget = res.limits.budget
        if extra > 0 and budget is not None and account.spent + account.reserved + extra > budget:
            raise LimitExceeded("budget", res.buyer, budget, account.spent + account.reserved - res.credits,
                                credits, None)
        account.reserved = max(0.0, account.reserved + extra)
        res.credits = credits

    async def settle(self, res: Reservation, credits: float, tokens: int) -> None:
        """Charge, count and release."""
        self.settle_now(res, credits, tokens)

    def settle_now(self, res: Reservation, credits: float, tokens: int) -> None:
        """:meth:`settle` without the event loop."""
        account = self._account(res.buyer)
        account.reserved = max(0.0, account.reserved - res.credits)
        if res.limits.budget is not None:  # spend is kept for budgets only
            account.spent += credits
        extra = tokens - res.tokens
        if res.window == account.window.index:
            account.window.tokens = max(0, account.window.tokens + extra)
        elif extra > 0:  # tokens past the reservation, produced after its window ended
            account.window.tokens += extra

    def spent(self, buyer: str) -> float:
        """Credits charged to ``buyer`` here."""
        account = self._accounts.get(buyer)
        return account.spent if account is not None else 0.0

    def discharge(self, buyer: str, credits: float) -> None:
        """Forget ``credits`` of the buyer's charges, now counted elsewhere (in Redis, after an outage)."""
        account = self._accounts.get(buyer)
        if account is not None:
            account.spent = max(0.0, account.spent - credits)

    def spending(self) -> dict[str, float]:
        """Every buyer's credits charged here (what a replica brings back to Redis after an outage)."""
        return {buyer: a.spent for buyer, a in self._accounts.items() if a.spent}
