"""Finished requests' outcomes, reported to the metrics and the access log in passes.

Recording an outcome costs the response path a list append; the Prometheus updates and the
log line happen in a pass at most ``REPORT_INTERVAL_S`` later, after the response was sent, as
learning does (issue 14). The line is then formatted and written by the access log's thread.
"""

from __future__ import annotations

import asyncio

from mercato.gateway.live.access_log import AccessLog
from mercato.gateway.live.metrics import GatewayMetrics
from mercato.gateway.live.outcomes import Outcome

REPORT_INTERVAL_S = 0.02


class OutcomeReporter:
    """Collects outcomes on the event loop and reports them together, off the response path."""

    def __init__(self, metrics: GatewayMetrics, access_log: AccessLog | None) -> None:
        self.metrics = metrics
        self.access_log = access_log
        self._pending: list[Outcome] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, outcome: Outcome) -> None:
        """Queue one outcome; a pass reports it within ``REPORT_INTERVAL_S``."""
        self._pending.append(outcome)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(REPORT_INTERVAL_S, self.flush)

    def flush(self) -> None:
        """Report everything queued now (``/metrics`` calls it first, so a scrape sees every request)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        for outcome in pending:
            self.metrics.record(outcome)
        if self.access_log is not None:
            self.access_log.write(pending)
