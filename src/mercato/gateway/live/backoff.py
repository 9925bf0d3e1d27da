"""How long to wait before retrying a backend: full-jitter exponential backoff, or its Retry-After.

Full jitter (a uniform draw in ``[0, min(cap, base * 2^(attempt-1))]``) keeps many gateway
requests that failed together from retrying together, which a plain exponential schedule
does: they would hit a recovering backend in synchronized waves. A backend that says when to
come back (``Retry-After`` on a 429 or 503, in seconds or as an HTTP date) is not retried before
that; when it asks for longer than ``retry_after_max_s`` the request fails over instead of
holding its client that long.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

from mercato.gateway.live.config import RetryConfig


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delay-seconds or HTTP-date; RFC 9110 10.2.3).

    None when the header is absent or unreadable; a date in the past is 0. ``now`` is the Unix
    time to count a date from (default: the current time).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # an HTTP date is always GMT
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class Backoff:
    """Delays between attempts on one backend, drawn from its own random stream."""

    def __init__(self, config: RetryConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()

    def delay_s(self, attempt: int, retry_after: str | None = None) -> float | None:
        """Seconds to wait before retry ``attempt`` (1-based); None: do not retry this backend.

        ``retry_after`` is the failed answer's ``Retry-After`` header, if it had one: the wait is
        at least what it asks, and None when it asks for more than ``retry_after_max_s``.
        """
        cfg = self.config
        jittered = self._rng.uniform(0.0, min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** (attempt - 1)))
        asked = retry_after_s(retry_after)
        if asked is None:
            return jittered
        if asked > cfg.retry_after_max_s:
            return None
        return max(asked, jittered)
