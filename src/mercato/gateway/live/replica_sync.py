"""Gateway replicas share per-backend load and prefix state through Redis, off the request path.

Load, by lease: every ``LOAD_INTERVAL_S`` a replica writes its own in-flight count and queued
prefill seconds per backend to ``mercato:load:<replica>`` with an expiry of ``LEASE_S``, keeps
its name in the sorted set ``mercato:replicas`` (scored by when its lease ends), and reads the
other live replicas' reports, summed, into its router (:class:`~mercato.gateway.core.replicas.ReplicaView`).
A replica killed with -9 stops renewing, so its load leaves every view within ``LEASE_S``.

Prefix state: each prefix entry the replica's router observes (the dialogue text a backend now
holds) is appended to the stream ``mercato:prefix``, trimmed to about ``STREAM_MAXLEN`` entries;
a reader blocks on the stream and applies the other replicas' entries, so every replica's ledger
converges to the one a single gateway would keep. A replica that starts (or restarts after a
crash) reads the stream from its start and so inherits the recent history. With KV events the
engines themselves publish their cache state and every replica subscribes, so nothing extra is
shared for those backends.

Metrics: every ``METRICS_INTERVAL_S`` a replica also leaves its Prometheus exposition under
``mercato:metrics:<replica>`` and keeps the others', so that a scrape answered by any worker shows
every replica (:func:`~mercato.gateway.live.metrics.federate`).

Outage: when Redis cannot be reached the replica logs it once, routes on its own load and prefix
state (the others' load is dropped rather than trusted stale), retries every ``RETRY_S`` and logs
the recovery once. A restarted, empty Redis needs no rebuilding: leases are rewritten on the next
beat, and stream ids are times, so the readers' positions stay valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mercato.gateway.core.replicas import BackendShare, ReplicaView, summed
from mercato.gateway.live.config import redacted
from mercato.gateway.live.tasks import cancel_all

log = logging.getLogger("mercato.gateway")
LOAD_INTERVAL_S = 0.1  # how often a replica reports its load and reads the others'
LEASE_S = 1.5  # a report older than this is gone (the replica stopped renewing it)
RETRY_S = 1.0  # wait before trying an unreachable Redis again
METRICS_INTERVAL_S = 1.0  # how often a replica leaves its metrics for the others
READ_BLOCK_MS = 1000  # longest wait of the prefix reader for new entries
STEP_TIMEOUT_S = 4.0  # a round of any loop taking longer is an outage (the reader's block included)
STREAM_MAXLEN = 10_000  # prefix entries kept for replicas that start later
PUBLISH_BATCH = 256  # prefix entries written per round trip
OUTBOX_LIMIT = 10_000  # prefix entries held while Redis is away; the oldest are dropped beyond
REPLICAS = "mercato:replicas"
LOAD = "mercato:load:"
PREFIX = "mercato:prefix"
METRICS = "mercato:metrics:"
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def replica_name() -> str:
    """A name no other replica has, that an operator can trace to a host and process."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ReplicaSync:
    """Keeps one replica's :class:`ReplicaView` in step with the other replicas through Redis.

    ``share``: take the others' load and prefix entries into the view (off: only register, and
    exchange ``metrics``, a callable returning this replica's exposition).
    """

    def __init__(self, view: ReplicaView, url: str, name: str | None = None, *, share: bool = True,
                 metrics: Callable[[], bytes] | None = None) -> None:
        self.view = view
        self.url = url
        self.name = name or replica_name()
        self.share = share
        self.metrics = metrics
        self.peer_metrics: dict[str, bytes] = {}  # the other live replicas' expositions
        self._others: list[str] = []
        self.reachable = True
        self.received = 0  # prefix entries applied from other replicas
        self._outbox: deque[tuple[str, str, str]] = deque(maxlen=OUTBOX_LIMIT)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._clients: list[aioredis.Redis] = []  # every connection pool opened, closed on stop
        self._position: bytes | str = "0-0"  # the reader's place in the stream: from its start, at first
        if share:
            view.listen(self._observed)

    @property
    def peers(self) -> int:
        """Other live replicas at the latest beat."""
        return len(self._others)

    def _observed(self, backend: str, session: str, text: str) -> None:
        self._outbox.append((backend, session, text))
        self._wake.set()

    def _connect(self) -> aioredis.Redis:
        """A connection pool of its own for one loop (connections are made lazily: an unreachable
        Redis is an outage, not a start-up failure)."""
        client = aioredis.from_url(self.url, socket_timeout=READ_BLOCK_MS / 1000.0 + 1.0,
                                   socket_connect_timeout=1.0)
        self._clients.append(client)
        return client

    async def start(self) -> None:
        """Run the loops: the load beat, and by what is shared the prefix stream and the metrics."""
        loops = [(self._beat, "load")]
        if self.share:
            loops += [(self._publish, "publish"), (self._read, "read")]
        if self.metrics is not None:
            loops.append((self._exchange_metrics, "metrics"))
        for loop, name in loops:
            self._tasks.append(asyncio.create_task(self._forever(loop, name == "load"),
                                                   name=f"mercato-replica-{name}"))

    async def stop(self) -> None:
        """Stop the loops, give the lease back at once (others stop counting this replica's load)."""
        await cancel_all(self._tasks)
        self._tasks.clear()
        client = self._connect()
        with contextlib.suppress(*_UNREACHABLE):
            await asyncio.wait_for(client.delete(LOAD + self.name, METRICS + self.name), STEP_TIMEOUT_S)
            await asyncio.wait_for(client.zrem(REPLICAS, self.name), STEP_TIMEOUT_S)
        for pool in self._clients:
            with contextlib.suppress(*_UNREACHABLE):
                await asyncio.wait_for(pool.aclose(), STEP_TIMEOUT_S)
        self._clients.clear()

    async def _forever(self, step: Callable[[aioredis.Redis], Awaitable[None]], judges: bool) -> None:
        """Run ``step`` again and again on a connection pool of its own; an unreachable Redis pauses
        it for ``RETRY_S``, and the next round starts on a fresh pool.

        A round that takes over ``STEP_TIMEOUT_S`` counts as an outage and is abandoned, not
        awaited: after a Redis restart a call of the client was once seen to wait forever, even
        when cancelled, and a stuck loop would stop renewing the lease. Only the load beat, which
        talks to Redis every round, ``judges`` whether Redis is there: the other loops may have had
        nothing to send, or hit a connection that went stale in an outage the beat has already
        seen end; they just try again.
        """
        client = self._connect()
        while True:
            attempt = asyncio.ensure_future(step(client))
            try:
                try:
                    done, _ = await asyncio.wait({attempt}, timeout=STEP_TIMEOUT_S)
                except asyncio.CancelledError:  # stopping: the round goes too
                    attempt.cancel()
                    raise
                if not done:
                    raise TimeoutError(f"a round of {step.__name__} took over {STEP_TIMEOUT_S:g} s")
                attempt.result()
            except _UNREACHABLE as err:
                attempt.cancel()
                client = self._connect()
                if judges:
                    self._lost(err)
                else:
                    log.debug("replica %s: %s failed (%s); retrying", self.name, step.__name__, err)
                await asyncio.sleep(RETRY_S)
            else:
                if judges:
                    self._back()

    def _lost(self, err: BaseException) -> None:
        self.view.share({}, time.time())
        self._others = []
        self.peer_metrics = {}
        if self.reachable:
            self.reachable = False
            log.warning("shared state at %s unreachable (%s): routing on this replica's own load and "
                        "prefix state until it returns", redacted(self.url), type(err).__name__)

    def _back(self) -> None:
        if not self.reachable:
            self.reachable = True
            log.warning("shared state at %s reachable again: sharing load and prefix state",
                        redacted(self.url))

    async def _beat(self, client: aioredis.Redis) -> None:
        """Renew this replica's lease with its load, then read the others' (one beat)."""
        now = time.time()
        own = self.view.own_load(now)
        report = orjson.dumps({"at": now, "load": {k: [s.inflight, s.wait_s] for k, s in own.items()}})
        lease_ms = int(LEASE_S * 1000)
        pipe = client.pipeline(transaction=False)
        pipe.set(LOAD + self.name, report, px=lease_ms)
        pipe.zadd(REPLICAS, {self.name: now * 1000 + lease_ms})
        pipe.zremrangebyscore(REPLICAS, "-inf", now * 1000)
        pipe.zrange(REPLICAS, 0, -1)
        alive = [n.decode() for n in (await pipe.execute())[-1]]
        self._others = others = [n for n in alive if n != self.name]
        if self.share:
            raw = await client.mget([LOAD + n for n in others]) if others else []
            now = time.time()
            self.view.share(summed([_parse_load(r, now) for r in raw if r is not None]), now)
        await asyncio.sleep(LOAD_INTERVAL_S)

    async def _exchange_metrics(self, client: aioredis.Redis) -> None:
        """Leave this replica's exposition for the others, and take theirs."""
        assert self.metrics is not None
        await client.set(METRICS + self.name, self.metrics(), px=int(3 * METRICS_INTERVAL_S * 1000))
        others = list(self._others)
        raw = await client.mget([METRICS + n for n in others]) if others else []
        self.peer_metrics = {n: text for n, text in zip(others, raw, strict=True) if text is not None}
        await asyncio.sleep(METRICS_INTERVAL_S)

    async def _publish(self, client: aioredis.Redis) -> None:
        """Write the prefix entries observed since the last round, or wait a while for some."""
        if not self._outbox:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), READ_BLOCK_MS / 1000.0)
            return
        batch = [self._outbox.popleft() for _ in range(min(PUBLISH_BATCH, len(self._outbox)))]
        pipe = client.pipeline(transaction=False)
        for backend, session, text in batch:
            pipe.xadd(PREFIX, {"r": self.name, "b": backend, "s": session, "t": text},
                      maxlen=STREAM_MAXLEN, approximate=True)
        try:
            await pipe.execute()
        except _UNREACHABLE:
            self._outbox.extendleft(reversed(batch))  # sent when Redis returns
            raise

    async def _read(self, client: aioredis.Redis) -> None:
        """Apply the other replicas' prefix entries as they arrive."""
        answer = await client.xread({PREFIX: self._position}, count=1000, block=READ_BLOCK_MS)
        for _, entries in answer or ():
            for entry_id, fields in entries:
                self._position = entry_id
                if fields[b"r"].decode() != self.name:
                    self.view.remember(fields[b"b"].decode(), fields[b"s"].decode(), fields[b"t"].decode())
                    self.received += 1


def _parse_load(raw: bytes, now: float) -> dict[str, BackendShare]:
    """One replica's report; its queued prefill has drained since it was written."""
    report = orjson.loads(raw)
    age = max(now - float(report["at"]), 0.0)
    return {name: BackendShare(float(inflight), max(float(wait) - age, 0.0))
            for name, (inflight, wait) in report["load"].items()}

