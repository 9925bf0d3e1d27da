"""The access log: one line per API request, served or refused, as ``key=value`` text or JSON.

Lines are formatted and written by a thread of the log's own: the event loop only hands over
a finished pass's outcomes (one queue put), so a slow terminal, pipe or disk never stalls a
response. Fields, in order: ``ts`` (UTC, end of the request), ``endpoint``, ``request_id``,
``buyer``, ``model`` (asked for), ``backend`` (that served it), ``status``, ``stream``,
``ttft_ms``, ``tpot_ms``, ``latency_ms``, token counts, ``cost`` and ``payment`` (credits),
``failovers``, and for errors ``error`` (the code) and ``message``. Absent values are ``-`` in
text and ``null`` in JSON.
"""

from __future__ import annotations

import queue
import re
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from mercato.gateway.live.config import LoggingConfig
from mercato.gateway.live.outcomes import Outcome

MESSAGE_CHARS = 300  # an error message is cut here: a log line stays a line
_NEEDS_QUOTES = re.compile(r'[\s"=\\]')


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000.0 * seconds, 3)


def access_fields(o: Outcome) -> dict[str, Any]:
    """The log line's fields, in order."""
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(o.time, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "endpoint": o.endpoint, "request_id": o.request_id, "buyer": o.buyer, "model": o.model,
        "backend": o.backend, "status": o.status, "stream": o.stream, "ttft_ms": _ms(o.ttft_s),
        "tpot_ms": _ms(o.tpot_s), "latency_ms": _ms(o.latency_s), "prompt_tokens": o.prompt_tokens,
        "cached_tokens": o.cached_tokens, "completion_tokens": o.completion_tokens,
        "cost": None if o.cost is None else round(o.cost, 6),
        "payment": None if o.payment is None else round(o.payment, 6), "failovers": o.failovers}
    if o.error is not None or o.message is not None:
        fields["error"] = o.error
        fields["message"] = None if o.message is None else o.message[:MESSAGE_CHARS]
    return fields


def _text_value(value: Any) -> str:
    if value is None:
        return "-"
    if value is True or value is False:
        return "true" if value else "false"
    if not isinstance(value, str):
        return str(value)
    if not value or _NEEDS_QUOTES.search(value):
        return orjson.dumps(value).decode()
    return value


def format_line(fields: dict[str, Any], fmt: str) -> str:
    """One line (without its newline): a JSON object, or ``key=value`` pairs with quoted strings."""
    if fmt == "json":
        return orjson.dumps(fields).decode()
    return " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())


class AccessLog:
    """Writes outcomes as lines from a background thread, to ``file`` or else the standard error."""

    def __init__(self, config: LoggingConfig) -> None:
        self.format = config.format
        self.path = config.file
        self._queue: queue.SimpleQueue[list[Outcome] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open the file (appending) and start the writer thread."""
        stream: IO[str] = sys.stderr if self.path is None else self.path.open("a", encoding="utf-8")
        self._thread = threading.Thread(target=self._run, args=(stream,), name="mercato-access-log",
                                        daemon=True)
        self._thread.start()

    def write(self, outcomes: list[Outcome]) -> None:
        """Hand a pass's outcomes to the writer thread (never blocks); the list is the log's now."""
        self._queue.put(outcomes)

    def close(self) -> None:
        """Write what is queued, stop the thread and close the file."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self, stream: IO[str]) -> None:
        try:
            while (batch := self._queue.get()) is not None:
                stream.write("".join(format_line(access_fields(o), self.format) + "\n" for o in batch))
                stream.flush()
        finally:
            if stream is not sys.stderr:
                stream.close()
