"""asyncio micro-batcher: concurrent requests are allocated together, a batch at a time.

When a batch flushes is the core's :class:`~mercato.gateway.core.batching.BatchingRule`, the
same rule the virtual clock follows. The queue is bounded; a request that finds it full is
refused at once with :class:`QueueFullError` (the app answers 429 with ``Retry-After``)
instead of waiting without bound.

Admission: when ``room()`` says the fleet can take no more (every engine slot busy and its queue
as deep as allowed), requests stay here, first in first out, instead of piling up in the
engines' queues; :meth:`MicroBatcher.wake` lets them on as soon as a request finishes. A request
held longer than ``max_hold_s`` is refused with :class:`OverloadedError` (429 with
``Retry-After``), so under overload nobody waits without bound and nobody is overtaken.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from mercato.gateway.core.batching import BatchingRule

T = TypeVar("T")
R = TypeVar("R")


class QueueFullError(Exception):
    """The batch queue is full; ``retry_after_s`` is a hint for the client."""

    def __init__(self, queued: int, retry_after_s: int) -> None:
        super().__init__(f"the gateway's batch queue is full ({queued} requests waiting)")
        self.retry_after_s = retry_after_s


class OverloadedError(Exception):
    """The fleet stayed full for the whole of a request's allowed hold; retry later."""

    def __init__(self, held_s: float, retry_after_s: int) -> None:
        super().__init__(f"every backend stayed busy for {held_s:.1f} s; the gateway is overloaded")
        self.retry_after_s = retry_after_s


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    queued_at: float


class MicroBatcher(Generic[T, R]):
    """Collects items and hands them to ``flush`` in batches; ``submit`` returns the item's result.

    ``flush`` runs on the event loop thread and must return one result per item, in order (the
    Router's ``route`` does: it is quick and single-threaded by design). If it raises, every
    item of that batch gets the exception. ``on_batch(size, seconds)`` observes each flush.
    ``room()``, when given, is how many more requests may be routed now; the rest are held, at
    most ``max_hold_s`` each.
    """

    def __init__(self, flush: Callable[[list[T]], Sequence[R]], rule: BatchingRule | None = None,
                 queue_limit: int = 4096, on_batch: Callable[[int, float], None] | None = None,
                 room: Callable[[], int] | None = None, max_hold_s: float = math.inf) -> None:
        if queue_limit < 1:
            raise ValueError("queue_limit must be >= 1")
        if not max_hold_s > 0:
            raise ValueError("max_hold_s must be > 0")
        self._room = room
        self.max_hold_s = max_hold_s
        self._flush_fn = flush
        self.rule = rule or BatchingRule()
        self.queue_limit = queue_limit
        self._on_batch = on_batch
        self._queue: deque[_Pending[T, R]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self.batches = 0

    def __len__(self) -> int:
        return len(self._queue)

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item``; await the returned future for its result. Raises :class:`QueueFullError`.

        Queueing is synchronous, so a full queue is refused before the caller awaits anything.
        """
        if len(self._queue) >= self.queue_limit:
            raise QueueFullError(len(self._queue), self._retry_after())
        loop = asyncio.get_running_loop()
        pending: _Pending[T, R] = _Pending(item, loop.create_future(), time.monotonic())
        self._queue.append(pending)
        if len(self._queue) >= self.rule.max_batch:
            self._schedule_flush(loop)
        elif self._timer is None and not self._flush_scheduled:
            self._arm(loop)
        return pending.future

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Schedule the next flush when the rule says the queue is due."""
        delay = self._until_due()
        if delay <= 0:
            self._schedule_flush(loop)
        else:
            self._timer = loop.call_later(delay, self._on_timer)

    def _until_due(self) -> float:
        now = time.monotonic()
        return self.rule.due(len(self._queue), self._queue[0].queued_at, self._queue[-1].queued_at, now) - now

    def _on_timer(self) -> None:
        """The armed time came: flush, unless later arrivals moved the quiet deadline on."""
        self._timer = None
        if not self._queue or self._flush_scheduled:
            return
        delay = self._until_due()
        if delay <= 0:
            self._flush()
        else:
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _retry_after(self) -> int:
        """Seconds until the queue has drained at one batch per wait interval, at least 1."""
        batches = len(self._queue) / self.rule.max_batch
        return max(1, math.ceil(batches * max(self.rule.max_wait_s, 0.001)))

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)

    def wake(self) -> None:
        """Room may have opened (a request finished): let held requests on."""
        if self._queue and self._room is not None:
            self._schedule_flush(asyncio.get_running_loop())

    def _flush(self) -> None:
        """Hand one batch to ``flush``; re-arm for what is left."""
        self._flush_scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        self._refuse_overdue(now)
        room = self.rule.max_batch if self._room is None else min(self.rule.max_batch, self._room())
        batch: list[_Pending[T, R]] = []
        while self._queue and len(batch) < room:
            pending = self._queue.popleft()
            if not pending.future.done():  # a client that went away is not allocated
                batch.append(pending)
        if batch:
            self._run(batch)
        if not self._queue:
            return
        if room <= 0:  # held: wait for wake(), or refuse the head when its hold runs out
            if math.isfinite(self.max_hold_s):
                delay = self._queue[0].queued_at + self.max_hold_s - now
                self._timer = loop.call_later(max(delay, 0.0), self._flush)
            return
        self._arm(loop)

    def _refuse_overdue(self, now: float) -> None:
        """Fail the requests held past ``max_hold_s`` (the oldest are at the head)."""
        while self._queue and now - self._queue[0].queued_at >= self.max_hold_s:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(
                    OverloadedError(now - pending.queued_at, max(1, math.ceil(self.max_hold_s))))

    def _run(self, batch: list[_Pending[T, R]]) -> None:
        start = time.perf_counter()
        try:
            results = self._flush_fn([p.item for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"flush returned {len(results)} results for {len(batch)} items")
        except Exception as err:  # every waiter learns why; the batcher itself keeps running
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(err)
            return
        finally:
            self.batches += 1
            if self._on_batch is not None:
                self._on_batch(len(batch), time.perf_counter() - start)
        for p, result in zip(batch, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)

    def close(self, reason: str = "the gateway is shutting down") -> None:
        """Fail everything still queued (server shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError(reason))
