"""Per-backend load as the router counts it: requests in flight, recent dispatches, health.

The router's own view of load (it has not yet heard back from the engines), kept apart from the
routing logic so that one object answers "how busy is each backend" for the market builder, the
snapshot and, later, for replicas that share it.
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
        self.backlog = np.zeros(m)  # uncached k-tokens of the requests in flight
        self.healthy = np.ones(m, dtype=bool)
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

    def dispatched(self, backend: int, now: float, uncached_ktok: float) -> None:
        """A request with ``uncached_ktok`` of prompt to prefill is now in flight at ``backend``."""
        self.inflight[backend] += 1
        self.backlog[backend] += uncached_ktok
        self._dispatches[backend].append(now)

    def released(self, backend: int, uncached_ktok: float) -> None:
        """A request left ``backend`` (finished, failed or failed over)."""
        self.inflight[backend] -= 1
        self.backlog[backend] = max(0.0, self.backlog[backend] - uncached_ktok)

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
        free = np.maximum(self.capacity - self.inflight.astype(np.int64), 0)
        capacity = free if free[self.healthy].sum() >= batch_size else self.capacity.copy()
        capacity[~self.healthy] = 0
        return capacity
