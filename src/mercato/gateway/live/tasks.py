"""The live gateway's background tasks end the same way everywhere: cancelled, then awaited.

Awaiting a cancelled task lets it run its ``finally`` blocks (close a socket, give a lease back)
before the caller closes what the task was using; its own ``CancelledError`` is the expected
end, not a failure. The wait is bounded: a task stuck in a call that ignores cancellation must
not keep the gateway from shutting down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

GRACE_S = 5.0  # how long a cancelled task may take to end
log = logging.getLogger("mercato.gateway")


async def cancel_all(tasks: Iterable[asyncio.Task[Any] | None], grace_s: float = GRACE_S) -> None:
    """Cancel every task (None: never started) and wait until each has ended, ``grace_s`` at most."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    if not running:
        return
    done, stuck = await asyncio.wait(running, timeout=grace_s)
    for task in done:
        if not task.cancelled() and (err := task.exception()) is not None:
            log.warning("background task %s ended with %r", task.get_name(), err)
    for task in stuck:
        log.warning("background task %s did not end within %g s of being cancelled; left behind",
                    task.get_name(), grace_s)
