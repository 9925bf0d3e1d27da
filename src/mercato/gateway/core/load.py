"""Per-backend load as the router counts it: requests in flight, recent dispatches, health.

The router's own view of load (it has not yet heard back from the engines), kept apart from the
routing logic so that one object answers "how busy is each backend" for the market builder, the
snapshot and, later, for replicas that share it.

Each backend also has a *prefill clock*: the time its prefill queue drains, as the router
estimates it. An engine prefills uncached prompt tokens one request after another, so a request
sent at ``now`` starts its prefill at ``max(now, free_at)`` and moves the clock on by its own
prefill time. The wait ``free_at - now`` is what a new request queues for, and it drains with
time, unlike a count of requests in flight (most of which are decoding, not prefilling). When
a request's first token comes earlier or later than the clock said, every request queued behind
it moves by the same amount, so the clock is shifted by the error (:meth:`BackendLoad.resync`).

Gateway replicas share one fleet, so each adds what the *others* report (:meth:`BackendLoad.share`):
their requests in flight, and their prefill queues, which drain with time like this replica's own.
Everything a replica decides on (free slots, features, waits) reads the sum; what it counts itself
(``inflight``, the clock) stays its own, so that a lost replica's share simply disappears.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.typing import NDArray

RATE_WINDOW_S = 1.0  # arrival and dispatch rates are counts over this trailing window


class BackendLoad:
    """In-flight counts, dispatch and arrival rates over a trailing window, and circuit health."""

    def __init__(self, capacity: list[int]) -> None:
        m = len(capacity)
        self.capacity = np.array(capacity, dtype=np.int64)
        self.inflight = np.zeros(m)
        self.prefill_free_at = np.zeros(m)  # when each prefill queue drains (router's estimate)
        self.shift = np.zeros(m)  # sum of the corrections applied to each clock so far
        self.healthy = np.ones(m, dtype=bool)
        self.others_inflight = np.zeros(m)  # other replicas' requests in flight (see share)
        self._others_wait = np.zeros(m)  # their prefill queues' length when reported ...
        self._others_at = 0.0  # ... at this time
        self._arrivals: deque[float] = deque()
        self._dispatches: list[deque[float]] = [deque() for _ in range(m)]

    def arrived(self, count: int, now: float) -> None:
        """``count`` requests reached the router at ``now``; older window entries expire."""
        self._arrivals.extend([now] * count)
        horizon = now - RATE_WINDOW_S
        while self._arrivals and self._arrivals[0] < horizon:
            self._arrivals.popleft()
        for d in self._dispatches:
            while d and d[0] < horizon:
                d.popleft()

    def dispatched(self, backend: int, now: float, prefill_s: float) -> float:
        """A request needing ``prefill_s`` of prefill is now in flight at ``backend``.

        Returns when its prefill should end by the backend's clock.
        """
        self.inflight[backend] += 1
        self.prefill_free_at[backend] = max(self.prefill_free_at[backend], now) + prefill_s
        self._dispatches[backend].append(now)
        return float(self.prefill_free_at[backend])

    def released(self, backend: int) -> None:
        """A request left ``backend`` (finished, failed or failed over)."""
        self.inflight[backend] -= 1

    def share(self, inflight: NDArray[np.float64], wait_s: NDArray[np.float64], now: float) -> None:
        """Other replicas' load as last reported: (M,) requests in flight and prefill queue seconds."""
        self.others_inflight = inflight
        self._others_wait = wait_s
        self._others_at = now

    def busy(self) -> NDArray[np.float64]:
        """(M,) requests in flight at each backend, from every replica."""
        return self.inflight + self.others_inflight

    def own_wait(self, now: float) -> NDArray[np.float64]:
        """(M,) seconds this replica's own queued prefills hold each backend (what it reports)."""
        return np.maximum(self.prefill_free_at - now, 0.0)

    def prefill_wait(self, now: float) -> NDArray[np.float64]:
        """(M,) seconds a request sent now would wait before its own prefill starts."""
        others = np.maximum(self._others_wait - (now - self._others_at), 0.0)
        return self.own_wait(now) + others

    def resync(self, backend: int, now: float, error_s: float) -> None:
        """A prefill ended ``error_s`` later (negative: earlier) than the clock said.

        The requests still queued behind it move by the same amount; a drained queue stays
        drained. ``shift`` keeps the running sum, so that errors measured later against older
        estimates are not counted twice.
        """
        self.shift[backend] += error_s
        if self.prefill_free_at[backend] > now:
            self.prefill_free_at[backend] = max(self.prefill_free_at[backend] + error_s, now)

    @property
    def router_rate(self) -> float:
        """Requests per second that reached the router over the window."""
        return len(self._arrivals) / RATE_WINDOW_S

    def backend_rates(self) -> NDArray[np.float64]:
        """(M,) dispatches per second over the window."""
        return np.array([len(d) for d in self._dispatches], dtype=np.float64) / RATE_WINDOW_S

    def offered_capacity(self, batch_size: int) -> NDArray[np.int64]:
        """(M,) slots offered to a batch: the free ones, or full capacities when too few are free.

        IEMAS: when the batch outnumbers the free slots, every backend offers its full capacity
        and the excess queues at the engines. Unhealthy backends offer none.
        """
        free = np.maximum(self.capacity - self.busy().astype(np.int64), 0)
        capacity = free if free[self.healthy].sum() >= batch_size else self.capacity.copy()
        capacity[~self.healthy] = 0
        return capacity
