"""When a micro-batch is flushed: the one rule the live batcher and the virtual clock share.

The auction needs several requests at once to trade them off against each other, but a request
must never wait long for company: a batch is flushed as soon as it holds ``max_batch``
requests, or ``max_wait_s`` after its *first* request was queued (IEMAS: 16 requests, 10 ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchingRule:
    """Flush at ``max_batch`` queued requests or ``max_wait_s`` after the first one."""

    max_batch: int = 16
    max_wait_s: float = 0.010

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if not (self.max_wait_s >= 0 and math.isfinite(self.max_wait_s)):
            raise ValueError(f"max_wait_s must be a finite number >= 0, got {self.max_wait_s}")

    def due(self, queued: int, first_queued_at: float, now: float) -> float:
        """When a queue of ``queued`` requests, the oldest queued at ``first_queued_at``, flushes.

        ``now`` for a full batch, infinity for an empty queue.
        """
        if queued == 0:
            return math.inf
        if queued >= self.max_batch:
            return now
        return first_queued_at + self.max_wait_s
