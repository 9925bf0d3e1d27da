"""Budgets and rate limits in Redis, shared by gateway replicas, with a local fallback during outages.

Every check-and-count is one Lua script, so two replicas admitting requests of one buyer at the
same moment cannot both take the last credits of its budget. Keys (``{b}``: the buyer):

- ``mercato:spent:{b}``: credits charged; ``mercato:reserved:{b}``: credits held by running
  requests (expires ``reservation_ttl_s`` after the buyer's last reservation, which frees what a
  replica killed mid-request held);
- ``mercato:req:{b}:{k}`` and ``mercato:tok:{b}:{k}``: requests and tokens of rate window ``k``
  (expire after two windows);
- ``mercato:keys``: runtime API keys (:mod:`mercato.gateway.live.api_keys`);
- ``mercato:epoch``: one id per Redis lifetime; ``mercato:rebuilt:{b}``: the rebuild of a buyer's
  spend after a restart, for ``REBUILD_S``.

When Redis does not answer, the replica logs it once and enforces limits on its own counters
(:class:`~mercato.gateway.live.limits.LocalLimiter`), each replica taking 1/``replicas`` of every
rate limit and of the budget left at the outage, so that together they stay within the limits.
It probes Redis meanwhile; once it answers, the replica puts back the runtime keys it knows, adds
what it charged during the outage to the shared spend and, if Redis restarted empty (it lacks
the ``mercato:epoch`` it had), rebuilds the spend with the other replicas from the latest any of
them saw; then it logs the recovery once and shares again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mercato.gateway.live.config import BuyerLimits, redacted
from mercato.gateway.live.limits import LimitExceeded, LocalLimiter, RateWindows, Reservation, check_admission
from mercato.gateway.live.tasks import cancel_all

log = logging.getLogger("mercato.gateway")
KEYS_HASH = "mercato:keys"
EPOCH_KEY = "mercato:epoch"  # set once per Redis lifetime: an empty, restarted Redis lacks it
REBUILD_S = 60  # how long the replicas' joint rebuild of the spend after a restart may take
TIMEOUT_S = 0.5  # a Redis slower than this counts as unreachable: requests must not wait on it
PROBE_INTERVAL_S = 0.5
# What makes a replica enforce alone: Redis refusing or not answering, and also any error it
# answers with (no auth after a restart without the password, out of memory, a read-only
# replica): requests are served on local limits rather than failed, and the log names the error.
OUTAGES = (redis.RedisError, OSError)

# KEYS: spent, reserved, requests, tokens; ARGV: budget, rpm, tpm (-1: none), credits, tokens,
# window ttl, reservation ttl. Returns the state it decided on: status, spent, reserved, requests, tokens.
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local reserved = tonumber(redis.call('GET', KEYS[2]) or '0')
local requests = tonumber(redis.call('GET', KEYS[3]) or '0')
local used = tonumber(redis.call('GET', KEYS[4]) or '0')
local budget, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local credits, tokens = tonumber(ARGV[4]), tonumber(ARGV[5])
local status = 'ok'
if budget >= 0 and spent + reserved + credits > budget then status = 'budget'
elseif rpm >= 0 and requests + 1 > rpm then status = 'rpm'
elseif tpm >= 0 and used > 0 and used + tokens > tpm then status = 'tpm'
else
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], ARGV[6])
  redis.call('INCRBY', KEYS[4], tokens)
  redis.call('EXPIRE', KEYS[4], ARGV[6])
  if credits > 0 then
    redis.call('INCRBYFLOAT', KEYS[2], ARGV[4])
    redis.call('EXPIRE', KEYS[2], ARGV[7])
  end
end
return {status, tostring(spent), tostring(reserved), tostring(requests), tostring(used)}
"""

# KEYS: spent, reserved; ARGV: budget (-1: none), extra credits (may be negative), reservation ttl.
_RESIZE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local reserved = tonumber(redis.call('GET', KEYS[2]) or '0')
local budget, extra = tonumber(ARGV[1]), tonumber(ARGV[2])
if extra > 0 and budget >= 0 and spent + reserved + extra > budget then
  return {'budget', tostring(spent), tostring(reserved)}
end
redis.call('SET', KEYS[2], tostring(math.max(0, reserved + extra)), 'EX', ARGV[3])
return {'ok', tostring(spent), tostring(reserved)}
"""

# KEYS: spent, reserved, tokens; ARGV: credits to release, credits to charge (-1: keep no spend, the
# buyer has no budget), token change, window ttl. Returns the spend.
_SETTLE = """
local reserved = tonumber(redis.call('GET', KEYS[2]) or '0')
local release = tonumber(ARGV[1])
if release > 0 and reserved > 0 then
  local ttl = redis.call('TTL', KEYS[2])
  redis.call('SET', KEYS[2], tostring(math.max(0, reserved - release)))
  if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
end
local spent = redis.call('GET', KEYS[1]) or '0'
if tonumber(ARGV[2]) >= 0 then spent = redis.call('INCRBYFLOAT', KEYS[1], ARGV[2]) end
local change = tonumber(ARGV[3])
if change ~= 0 then
  local used = tonumber(redis.call('GET', KEYS[3]) or '0')
  redis.call('SET', KEYS[3], math.max(0, used + change), 'EX', ARGV[4])
end
return spent
"""

# KEYS: spent, rebuilt; ARGV: the spend this replica last saw, what it charged since, 1 when Redis
# restarted (empty) while it was away, how long a rebuild lasts (s). Returns the new spend.
# After a restart the replicas rebuild the spend together: ``rebuilt`` holds the largest spend any
# of them has brought back so far, and each adds only what its own last sight adds to that, so
# the spend becomes (the latest any replica saw) + (what each charged since), in any order.
_RESYNC = """
local base = false
if ARGV[3] == '1' then
  redis.call('SET', KEYS[2], '0', 'NX', 'EX', ARGV[4])
  base = tonumber(redis.call('GET', KEYS[2]) or '0')
end
local seen = tonumber(ARGV[1])
if base and seen > base then
  redis.call('INCRBYFLOAT', KEYS[1], tostring(seen - base))
  redis.call('SET', KEYS[2], ARGV[1], 'KEEPTTL')
end
return redis.call('INCRBYFLOAT', KEYS[1], ARGV[2])
"""


def _spent_key(buyer: str) -> str:
    return f"mercato:spent:{buyer}"


def _rebuilt_key(buyer: str) -> str:
    return f"mercato:rebuilt:{buyer}"


def _reserved_key(buyer: str) -> str:
    return f"mercato:reserved:{buyer}"


def _window_keys(buyer: str, window: int) -> tuple[str, str]:
    return f"mercato:req:{buyer}:{window}", f"mercato:tok:{buyer}:{window}"


def _limit(value: float | None) -> float:
    return -1 if value is None else value


class RedisLimiter:
    """Limits shared through Redis at ``url``; :attr:`shared` is False while it is unreachable."""

    def __init__(self, url: str, windows: RateWindows, replicas: int, reservation_ttl_s: float) -> None:
        self.url = url
        self.windows = windows
        self.replicas = replicas
        self.shared = True
        self.fallback = LocalLimiter(windows)
        # called at each recovery, before the spend is resynced and sharing resumes (the key ring
        # puts its keys back)
        self.on_recovery: list[Callable[[], Awaitable[None]]] = []
        self._client = redis.asyncio.Redis.from_url(
            url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S, retry=Retry(NoBackoff(), 0))
        self._reserve = self._client.register_script(_RESERVE)
        self._resize = self._client.register_script(_RESIZE)
        self._settle = self._client.register_script(_SETTLE)
        self._resync = self._client.register_script(_RESYNC)
        self._window_ttl = math.ceil(2 * windows.window_s)
        self._reservation_ttl = math.ceil(reservation_ttl_s)
        self._known: dict[str, float] = {}  # each buyer's spend as Redis last told it
        self._epoch: str | None = None  # the epoch of the Redis last seen (None: never reached)
        self._probe: asyncio.Task[None] | None = None

    # ---- lifecycle and health -------------------------------------------------------------
    async def start(self) -> None:
        """Check that Redis answers; if not, start on local limits (and keep probing)."""
        try:
            self._epoch = await self._claim_epoch()
        except OUTAGES as err:
            self.outage(err)

    async def _claim_epoch(self) -> str:
        """The epoch of the Redis reached now: the one there, or a new one if it has none."""
        await self._client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)
        epoch = await self._client.get(EPOCH_KEY)
        return epoch.decode() if epoch is not None else ""

    async def stop(self) -> None:
        """Stop probing and close the connection pool."""
        await cancel_all([self._probe])
        await self._client.aclose()

    def outage(self, err: BaseException) -> None:
        """Redis did not answer: enforce locally from now on, say so once, and probe for its return."""
        if not self.shared:
            return
        self.shared = False
        log.warning("shared state at %s unreachable (%s): enforcing budgets and rate limits on this "
                    "replica alone, its share 1/%d of each, until it returns", redacted(self.url),
                    type(err).__name__, self.replicas)
        self._probe = asyncio.create_task(self._probe_until_back(), name="mercato-redis-probe")

    async def _probe_until_back(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            try:
                epoch = await self._claim_epoch()
                for restore in self.on_recovery:
                    await restore()
                # last: it ends with nothing left to push, and nothing can be charged locally
                # between its end and sharing again
                buyers = await self._resync_spend(restarted=self._epoch is not None and epoch != self._epoch)
            except OUTAGES:
                continue
            self._epoch = epoch
            self.shared = True
            self._probe = None
            log.warning("shared state at %s reachable again: sharing budgets and rate limits "
                        "(spend of %d buyer(s) resynced)", redacted(self.url), buyers)
            return

    async def _resync_spend(self, restarted: bool) -> int:
        """Add what this replica charged while Redis was away, and after a restart (Redis came back
        empty) rebuild each buyer's spend from what was last seen; returns how many buyers were synced.

        A charge is forgotten locally only once Redis has it, and charges made during the push are
        pushed in the next round, so an outage in the middle loses nothing.
        """
        synced: set[str] = set()
        seen = dict(self._known)  # as last seen before the outage, whatever the pushes return
        todo = {buyer for buyer, spent in seen.items() if spent} | set(self.fallback.spending())
        while todo:
            charged = self.fallback.spending()
            for buyer in todo:
                amount = charged.get(buyer, 0.0)
                spent = await self._resync(keys=[_spent_key(buyer), _rebuilt_key(buyer)],
                                           args=[repr(seen.get(buyer, 0.0)), repr(amount),
                                                 int(restarted), REBUILD_S])
                self.fallback.discharge(buyer, amount)
                self._known[buyer] = float(spent)
            synced |= todo
            todo = set(self.fallback.spending())
        return len(synced)

    # ---- the Limiter interface ------------------------------------------------------------
    async def reserve(self, buyer: str, limits: BuyerLimits, credits: float, tokens: int) -> Reservation:
        """Count and hold in Redis (or locally, while it is unreachable)."""
        if self.shared:
            try:
                return await self._reserve_shared(buyer, limits, credits, tokens)
            except OUTAGES as err:
                self.outage(err)
        return self.fallback.reserve_now(buyer, self.share(buyer, limits), credits, tokens)

    async def _reserve_shared(self, buyer: str, limits: BuyerLimits, credits: float,
                              tokens: int) -> Reservation:
        window = self.windows.current()
        reply = await self._reserve(
            keys=[_spent_key(buyer), _reserved_key(buyer), *_window_keys(buyer, window)],
            args=[_limit(limits.budget), _limit(limits.rpm), _limit(limits.tpm), repr(credits), tokens,
                  self._window_ttl, self._reservation_ttl])
        status = reply[0].decode()
        spent, reserved, requests, used = (float(x) for x in reply[1:])
        self._known[buyer] = spent
        if status != "ok":
            # the script refused for this reason: the same check here raises the same refusal
            check_admission(buyer, limits, spent, reserved, int(requests), int(used), credits, tokens,
                            self.windows.retry_after_s(window))
        return Reservation(buyer, limits, credits, tokens, window, local=False)

    def share(self, buyer: str, limits: BuyerLimits) -> BuyerLimits:
        """This replica's part of ``limits`` while Redis is away: 1/replicas of each rate and of the
        budget left when it was last seen."""
        n = self.replicas
        budget = (None if limits.budget is None
                  else max(0.0, limits.budget - self._known.get(buyer, 0.0)) / n)
        return BuyerLimits(budget=budget, rpm=None if limits.rpm is None else max(1, limits.rpm // n),
                           tpm=None if limits.tpm is None else max(1, limits.tpm // n))

    async def resize(self, res: Reservation, credits: float) -> None:
        """Hold ``credits`` instead; an outage meanwhile lets the request keep its new price unchecked."""
        if res.local or not self.shared:
            if res.local:
                self.fallback.resize_now(res, credits)
            else:
                res.credits = credits
            return
        try:
            reply = await self._resize(keys=[_spent_key(res.buyer), _reserved_key(res.buyer)],
                                       args=[_limit(res.limits.budget), repr(credits - res.credits),
                                             self._reservation_ttl])
        except OUTAGES as err:
            self.outage(err)
            res.credits = credits
            return
        spent, reserved = float(reply[1]), float(reply[2])
        self._known[res.buyer] = spent
        if reply[0].decode() != "ok":
            assert res.limits.budget is not None  # only a budget refuses a resize
            raise LimitExceeded("budget", res.buyer, res.limits.budget, spent + reserved - res.credits,
                                credits, None)
        res.credits = credits

    async def settle(self, res: Reservation, credits: float, tokens: int) -> None:
        """Charge and release in Redis; a local reservation is charged there too once it is back."""
        if self.shared:
            now = self.windows.current()
            if res.local:  # neither its credits nor its tokens are in Redis: count all its tokens now
                release, change = 0.0, tokens
            else:
                release, change = res.credits, tokens - res.tokens
                if res.window != now:  # its window is over: tokens past the reservation count in this one
                    change = max(0, change)
            try:
                spent = await self._settle(
                    keys=[_spent_key(res.buyer), _reserved_key(res.buyer), _window_keys(res.buyer, now)[1]],
                    args=[repr(release), repr(credits) if res.limits.budget is not None else -1, change,
                          self._window_ttl])
                self._known[res.buyer] = float(spent)
                if res.local:  # release what the local counters held for it
                    self.fallback.settle_now(res, 0.0, res.tokens)
                return
            except OUTAGES as err:
                self.outage(err)
        if res.local:
            self.fallback.settle_now(res, credits, tokens)
        else:  # held in Redis, which is away: charge here, and the charge is pushed on recovery
            self.fallback.settle_now(Reservation(res.buyer, res.limits, 0.0, 0, self.windows.current()),
                                     credits, tokens)

    def spent(self, buyer: str) -> float:
        """The shared spend last seen plus what this replica charged while Redis was away."""
        return self._known.get(buyer, 0.0) + self.fallback.spent(buyer)

    # ---- runtime API keys -----------------------------------------------------------------
    async def key_entries(self) -> dict[str, str] | None:
        """Every entry of the runtime key hash (digest -> JSON); None while Redis is unreachable."""
        if not self.shared:
            return None
        try:
            raw: dict[Any, Any] = await self._client.hgetall(KEYS_HASH)
        except OUTAGES as err:
            self.outage(err)
            return None
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def key_entry(self, digest: str) -> str | None:
        """One entry of the runtime key hash; None when absent or while Redis is unreachable."""
        if not self.shared:
            return None
        try:
            raw = await self._client.hget(KEYS_HASH, digest)
        except OUTAGES as err:
            self.outage(err)
            return None
        return raw.decode() if raw is not None else None

    async def restore_keys(self, entries: dict[str, str]) -> None:
        """Put back runtime keys a restarted Redis lost (an entry already there is left alone)."""
        for digest, entry in entries.items():
            await self._client.hsetnx(KEYS_HASH, digest, entry)
