"""When a micro-batch is flushed: the one rule the live batcher and the virtual clock share.

The auction needs several requests at once to trade them off against each other, but a request
must never wait long for company: a batch is flushed as soon as it holds ``max_batch``
requests, or ``max_wait_s`` after its *first* request was queued (IEMAS: 16 requests, 10 ms),
or ``quiet_s`` after its *latest* one, when no other has come since. The quiet rule is what
makes a short wait safe: requests that arrive together (a burst) keep the batch open and are
allocated jointly, while a lone request under light load leaves after ``quiet_s`` instead of
sitting out the whole window for company that is not coming. ``quiet_s`` >= ``max_wait_s``
turns it off (the IEMAS rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchingRule:
    """Flush at ``max_batch`` queued, ``max_wait_s`` after the first or ``quiet_s`` after the latest."""

    max_batch: int = 16
    max_wait_s: float = 0.010
    quiet_s: float = math.inf

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if not (self.max_wait_s >= 0 and math.isfinite(self.max_wait_s)):
            raise ValueError(f"max_wait_s must be a finite number >= 0, got {self.max_wait_s}")
        if not self.quiet_s >= 0:
            raise ValueError(f"quiet_s must be >= 0, got {self.quiet_s}")

    def due(self, queued: int, first_queued_at: float, last_queued_at: float, now: float) -> float:
        """When ``queued`` requests, queued from ``first_queued_at`` to ``last_queued_at``, flush.

        ``now`` for a full batch, infinity for an empty queue.
        """
        if queued == 0:
            return math.inf
        if queued >= self.max_batch:
            return now
        return min(first_queued_at + self.max_wait_s, last_queued_at + self.quiet_s)
