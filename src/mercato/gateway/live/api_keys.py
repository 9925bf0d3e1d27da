"""API keys: the config's, and those an operator adds at runtime in Redis, with their limits.

Keys are held and looked up by their SHA-256 digest only, so that a key never sits in memory
dumps of the lookup table or in Redis in clear. The runtime keys are the hash ``mercato:keys``:
field = the key's hex SHA-256, value = a JSON object ``{"buyer": NAME}`` with optional
``budget``, ``rpm`` and ``tpm`` (which replace the config's limits for that buyer). The ring
re-reads the hash every ``limits.keys_refresh_s``, and a key it does not know is looked up once
at once (then remembered as unknown until the next re-read), so a new key works on its first
request and a flood of bad keys costs Redis one lookup per key per refresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from typing import Protocol

from pydantic import ValidationError

from mercato.gateway.live.config import BuyerLimits, LimitsConfig, RuntimeKey
from mercato.gateway.live.tasks import cancel_all

log = logging.getLogger("mercato.gateway")


def key_digest(key: str) -> str:
    """The hex SHA-256 of an API key: how the ring, and the Redis hash, name it."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore(Protocol):
    """Where runtime keys live (:class:`~mercato.gateway.live.limits_redis.RedisLimiter`)."""

    async def key_entries(self) -> dict[str, str] | None:
        """Every entry, digest -> JSON; None when the store is unreachable."""
        ...

    async def key_entry(self, digest: str) -> str | None:
        """One entry; None when absent or unreachable."""
        ...

    async def restore_keys(self, entries: dict[str, str]) -> None:
        """Write back entries a restarted store lost, leaving present ones alone."""
        ...


def parse_entry(digest: str, entry: str) -> RuntimeKey | None:
    """A runtime key's JSON value, or None (logged) when it is not a valid entry."""
    try:
        return RuntimeKey.model_validate_json(entry)
    except ValidationError as err:
        problem = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
                            for e in err.errors())
        log.warning("ignoring runtime API key %s...: %s", digest[:12], problem)
        return None


class KeyRing:
    """Who a bearer key belongs to, and the runtime limits that come with it."""

    def __init__(self, config_keys: Mapping[str, str], limits: LimitsConfig,
                 store: KeyStore | None = None) -> None:
        self._config = {key_digest(k): buyer for k, buyer in config_keys.items()}
        self._limits = limits
        self._store = store if limits.runtime_keys else None
        self._runtime: dict[str, RuntimeKey] = {}
        self._by_buyer: dict[str, BuyerLimits] = {}  # runtime limits by buyer
        self._entries: dict[str, str] = {}  # the raw entries, to put back into a restarted Redis
        self._unknown: set[str] = set()
        self._rejected: dict[str, str] = {}  # invalid entries, warned about once
        self._refresh: asyncio.Task[None] | None = None

    @property
    def required(self) -> bool:
        """True when requests must carry a key: the config has keys, or runtime keys are on."""
        return bool(self._config) or self._store is not None

    async def start(self) -> None:
        """Read the runtime keys, then keep re-reading them."""
        if self._store is not None:
            await self._reload()
            self._refresh = asyncio.create_task(self._refresh_loop(), name="mercato-api-keys")

    async def stop(self) -> None:
        """Stop re-reading."""
        await cancel_all([self._refresh])

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._limits.keys_refresh_s)
            await self._reload()

    async def _reload(self) -> None:
        """Take the store's keys as they are now (keep the known ones while it is unreachable)."""
        assert self._store is not None
        entries = await self._store.key_entries()
        if entries is None:
            return
        runtime = {d: key for d, e in entries.items() if (key := self._parse(d, e)) is not None}
        self._runtime, self._entries, self._unknown = runtime, entries, set()
        self._by_buyer = {key.buyer: self._merged(key) for key in runtime.values()}

    def _parse(self, digest: str, entry: str) -> RuntimeKey | None:
        """An entry as a key; one read before and unchanged is not validated (or warned about) again."""
        if self._entries.get(digest) == entry and (known := self._runtime.get(digest)) is not None:
            return known
        if self._rejected.get(digest) == entry:
            return None
        key = parse_entry(digest, entry)
        if key is None:
            self._rejected[digest] = entry
        return key

    async def restore(self) -> None:
        """Put the runtime keys this replica knows back into a store that lost them."""
        if self._store is not None and self._entries:
            await self._store.restore_keys(self._entries)

    async def buyer(self, key: str) -> str | None:
        """The buyer of ``key``, or None when no one's."""
        digest = key_digest(key)
        if (buyer := self._config.get(digest)) is not None:
            return buyer
        if (runtime := self._runtime.get(digest)) is not None:
            return runtime.buyer
        if self._store is None or digest in self._unknown:
            return None
        entry = await self._store.key_entry(digest)
        found = self._parse(digest, entry) if entry is not None else None
        if entry is None or found is None:
            self._unknown.add(digest)
            return None
        self._runtime[digest], self._entries[digest] = found, entry
        self._by_buyer[found.buyer] = self._merged(found)
        return found.buyer

    def _merged(self, runtime: RuntimeKey) -> BuyerLimits:
        configured = self._limits.of(runtime.buyer)
        given = runtime.model_dump(include={"budget", "rpm", "tpm"}, exclude_unset=True)
        return configured.model_copy(update=given) if given else configured

    def limits(self, buyer: str) -> BuyerLimits:
        """The buyer's limits: a runtime key's where it gives any, over the config's."""
        return self._by_buyer.get(buyer) or self._limits.of(buyer)
