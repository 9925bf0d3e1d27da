"""Runs an :class:`EngineCore` against the wall clock inside an asyncio event loop.

Virtual time is wall time since start multiplied by ``speed``: at speed 2 every simulated
duration takes half as long. Speed 0 (or infinity) is the zero-delay engine: nothing ever
sleeps, requests arrive at the engine's current virtual time and are answered as soon as the
event loop lets the driver run, while usage numbers (cached tokens, completion tokens) stay
those of the simulation. That mode exists to measure gateway overhead without model latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from mercato.engine.core import EngineCore, EngineRequest, EngineResult


@dataclass
class Ticket:
    """Futures of one submitted request: first token out, and the finished result."""

    request_id: str
    first_token: asyncio.Future[None] = field(repr=False)
    done: asyncio.Future[EngineResult] = field(repr=False)


class RealtimeEngine:
    """A background task that advances the core as its events fall due in real time."""

    def __init__(self, core: EngineCore, speed: float = 1.0,
                 on_step: Callable[[], None] | None = None) -> None:
        """``on_step`` runs after every step of the core (the KV-event publisher flushes there)."""
        if math.isnan(speed) or speed < 0:
            raise ValueError(f"speed must be >= 0 (0 means no delays), got {speed}")
        self.core = core
        self.speed = speed
        self.instant = speed == 0 or math.isinf(speed)
        self._on_step = on_step
        self._tickets: dict[str, Ticket] = {}
        self._t0 = 0.0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the driver in the running event loop."""
        loop = asyncio.get_running_loop()
        self._t0 = loop.time() - self.core.clock / (1.0 if self.instant else self.speed)
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._run(), name="mercato-engine-driver")

    async def stop(self) -> None:
        """Cancel the driver; requests still in flight are abandoned."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def now(self) -> float:
        """The current virtual time."""
        if self.instant:
            return self.core.clock
        wall = asyncio.get_running_loop().time() - self._t0
        return max(self.core.clock, wall * self.speed)

    def submit(self, request: EngineRequest) -> Ticket:
        """Hand a request to the core now; ValueError when the core refuses it."""
        if self._wake is None:
            raise RuntimeError("the engine driver is not running: call start() first")
        now = self.now()
        self._deliver(self.core.advance(now))
        self.core.submit(request, now)
        self._stepped()
        loop = asyncio.get_running_loop()
        ticket = Ticket(request.request_id, loop.create_future(), loop.create_future())
        self._tickets[request.request_id] = ticket
        self._wake.set()
        return ticket

    def partial_text(self, request_id: str) -> str:
        """The reply text a streaming client has received by now (all of it once finished)."""
        ticket = self._tickets.get(request_id)
        if ticket is None or ticket.done.done():
            raise KeyError(request_id)
        return self.core.partial_text(request_id, self.now())

    async def _run(self) -> None:
        """Sleep until the next engine event is due (or a new request arrives), then process it."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            due = self.core.next_event_time()
            if due == math.inf:
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self.instant:
                delay = self._t0 + due / self.speed - loop.time()
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    continue
            self._deliver(self.core.advance(due))
            self._stepped()
            await asyncio.sleep(0)  # let request handlers run between events

    def _stepped(self) -> None:
        if self._on_step is not None:
            self._on_step()

    def _deliver(self, results: list[EngineResult]) -> None:
        """Resolve finished requests and the first tokens that are out by the core's clock."""
        for result in results:
            ticket = self._tickets.pop(result.request_id, None)
            if ticket is None:
                continue
            if not ticket.first_token.done():
                ticket.first_token.set_result(None)
            if not ticket.done.done():
                ticket.done.set_result(result)
        clock = self.core.clock
        for request_id, ticket in self._tickets.items():
            if not ticket.first_token.done() and self.core.first_token_time(request_id) <= clock:
                ticket.first_token.set_result(None)
