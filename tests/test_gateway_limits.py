"""The limiters on their own: reserve, resize and settle, in process and in a real Redis; what a
request reserves before and after its auction; and the limits section of the config."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis

from mercato.gateway.core.lifecycle import Dispatch
from mercato.gateway.core.types import BuyerReport, Decision, RouteRequest
from mercato.gateway.live.assemble import build_router
from mercato.gateway.live.config import BuyerLimits, ConfigError, parse_config
from mercato.gateway.live.embedded_redis import embedded_redis
from mercato.gateway.live.enforcement import RESERVATION, Enforcement
from mercato.gateway.live.errors import APIError
from mercato.gateway.live.limits import Limiter, LimitExceeded, LocalLimiter, RateWindows
from mercato.gateway.live.limits_redis import RedisLimiter
from mercato.gateway.live.metrics import GatewayMetrics

BACKEND = {"name": "a", "url": "http://127.0.0.1:1/v1", "model": "m",
           "prices": {"input": 1.0, "cached_input": 0.5, "output": 2.0}}


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _exercise(limiter: Limiter, clock: Clock) -> None:
    """The same story for both limiters: budget held by reservations, resized, settled; windows."""
    limits = BuyerLimits(budget=10.0, rpm=3, tpm=100)
    a = await limiter.reserve("alice", limits, 4.0, 30)
    b = await limiter.reserve("alice", limits, 4.0, 30)
    with pytest.raises(LimitExceeded) as info:  # 4 + 4 + 4 > 10: budget first, and for good
        await limiter.reserve("alice", limits, 4.0, 1)
    assert info.value.reason == "budget" and info.value.retry_after_s is None
    with pytest.raises(LimitExceeded):  # growing a reservation past the budget is refused ...
        await limiter.resize(a, 7.0)
    assert a.credits == 4.0  # ... and it keeps what it held
    await limiter.resize(a, 1.0)  # the auction's price bounds it lower: 1 + 4 held
    await limiter.settle(a, 0.5, 20)
    assert limiter.spent("alice") == pytest.approx(0.5)
    with pytest.raises(LimitExceeded) as info:  # tokens: 20 used + 30 held + 60 > 100
        await limiter.reserve("alice", limits, 1.0, 60)
    assert info.value.reason == "tpm" and info.value.retry_after_s == pytest.approx(30.0)
    c = await limiter.reserve("alice", limits, 5.0, 10)  # 0.5 + 4 + 5 <= 10
    with pytest.raises(LimitExceeded) as info:  # a fourth request in the window
        await limiter.reserve("alice", limits, 0.0, 1)
    assert info.value.reason == "rpm"
    clock.now += 30.0  # the next window
    await limiter.settle(b, 4.0, 30)
    await limiter.settle(c, 5.0, 10)
    assert limiter.spent("alice") == pytest.approx(9.5)
    await limiter.reserve("bob", BuyerLimits(rpm=1), 0.0, 500)  # other buyers are counted apart
    with pytest.raises(LimitExceeded) as info:
        await limiter.reserve("alice", limits, 1.0, 1)
    assert info.value.reason == "budget"
    d = await limiter.reserve("alice", limits, 0.5, 500)  # alone in its window, over the tpm
    await limiter.settle(d, 0.5, 500)
    assert limiter.spent("alice") == pytest.approx(10.0)


def run(story: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(story())


def test_local_limiter_reserves_resizes_and_settles():
    clock = Clock(90.0)  # window [60, 120) of 60 s
    run(lambda: _exercise(LocalLimiter(RateWindows(60.0, clock)), clock))


def test_redis_limiter_does_the_same_in_redis():
    clock = Clock(90.0)
    with embedded_redis() as server:
        async def story() -> None:
            limiter = RedisLimiter(server.url, RateWindows(60.0, clock), replicas=2, reservation_ttl_s=60)
            await limiter.start()
            await _exercise(limiter, clock)
            assert limiter.shared
            await limiter.stop()

        run(story)
        r = redis.Redis.from_url(server.url)
        assert float(r.get("mercato:spent:alice")) == pytest.approx(10.0)
        assert float(r.get("mercato:reserved:alice")) == 0.0
        assert 0 < r.ttl("mercato:reserved:alice") <= 60  # a dead replica's reservations expire
        # window 1 counted three requests; window 2 one (the refused one is not counted)
        assert r.get("mercato:req:alice:1") == b"3" and r.get("mercato:req:alice:2") == b"1"


def test_redis_limiter_starts_on_local_shares_when_redis_is_down():
    with embedded_redis() as server:
        server.stop()

        async def story() -> None:
            limiter = RedisLimiter(server.url, RateWindows(60.0), replicas=3, reservation_ttl_s=60)
            await limiter.start()
            assert not limiter.shared
            limits = BuyerLimits(budget=9.0, rpm=7)
            assert limiter.share("alice", limits) == BuyerLimits(budget=3.0, rpm=2)
            await limiter.reserve("alice", limits, 3.0, 1)
            with pytest.raises(LimitExceeded):
                await limiter.reserve("alice", limits, 0.5, 1)
            await limiter.stop()

        run(story)


def limits_config(**limits: Any) -> Any:
    return parse_config({"backends": [BACKEND], "limits": limits})


def test_limits_section_defaults_and_per_buyer_limits():
    config = limits_config(default={"rpm": 60}, buyers={"alice": {"budget": 5, "tpm": 1000}})
    assert config.limits.of("alice") == BuyerLimits(budget=5.0, tpm=1000)
    assert config.limits.of("bob") == BuyerLimits(rpm=60)
    assert not parse_config({"backends": [BACKEND]}).limits.of("anyone").limited


@pytest.mark.parametrize(("limits", "where"), [
    ({"buyers": {"alice": {"rpm": 0}}}, "limits.buyers.alice.rpm"),
    ({"default": {"budget": -1}}, "limits.default.budget"),
    ({"buyers": {"alice": {"rps": 3}}}, "limits.buyers.alice.rps: unknown field"),
    ({"replicas": 0}, "limits.replicas"),
    ({"runtime_keys": True}, "limits.runtime_keys: needs state.redis_url"),
])
def test_limits_mistakes_name_their_field(limits, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        limits_config(**limits)


def test_the_auction_price_resizes_the_reservation_or_refuses_with_402():
    dear = BACKEND | {"name": "b", "prices": {"input": 2.0, "cached_input": 1.0, "output": 3.0}}
    config = parse_config({"backends": [BACKEND, dear], "limits": {"buyers": {"alice": {"budget": 100.0}}}})
    metrics = GatewayMetrics({"a": "m", "b": "m"}, {"alice"})

    def request() -> RouteRequest:
        return RouteRequest(request_id=uuid.uuid4().hex, prompt="p", prompt_tokens=10, max_tokens=5,
                            session_id="s", turn=1, domain=None, source=None, buyer="alice",
                            report=BuyerReport(), arrival=0.0)

    def priced(req: RouteRequest, backends: list[str], externality: float) -> Dispatch:
        decision = Decision(req, backends, True, 0.0, externality, 0.1, 1.0, 0.5, 1.0)
        return Dispatch(build_router(config), decision, time.time)

    async def story() -> None:
        enforcement = Enforcement(config, metrics)
        first = request()
        await enforcement.admit(first)  # the dearer backend's worst case: 2 * 10 + 3 * 5
        assert first.extra[RESERVATION].credits == pytest.approx(35.0)
        await enforcement.priced(priced(first, ["a"], externality=4.0))  # 4 + (1 * 10 + 2 * 5)
        assert first.extra[RESERVATION].credits == pytest.approx(24.0)
        second = request()
        await enforcement.admit(second)  # 24 + 35 <= 100
        with pytest.raises(APIError) as info:  # 24 + 77 + 35 > 100
            await enforcement.priced(priced(second, ["a", "b"], externality=77.0))
        assert info.value.status == 402 and info.value.headers["x-should-retry"] == "false"
        assert info.value.body()["error"]["code"] == "insufficient_quota"
        enforcement.release(second, None, 0)
        enforcement.release(first, None, 30)  # failed: nothing charged
        await enforcement.stop()
        assert enforcement.limiter.spent("alice") == 0.0
        third = request()
        await enforcement.admit(third)  # everything was released: a whole worst case fits again
        assert metrics.limit_rejections.labels("alice", "budget")._value.get() == 1

    run(story)


def test_replicas_rebuild_a_restarted_redis_spend_whichever_comes_back_first():
    limits = BuyerLimits(budget=1000.0)
    with embedded_redis() as server:
        async def story() -> None:
            a, b = (RedisLimiter(server.url, RateWindows(60.0), replicas=2, reservation_ttl_s=60)
                    for _ in range(2))
            for limiter in (a, b):
                await limiter.start()
            await a.settle(await a.reserve("alice", limits, 10.0, 1), 10.0, 1)  # 10 in Redis: a saw 10
            await b.settle(await b.reserve("alice", limits, 10.0, 1), 5.0, 1)  # 15: b saw 15
            await asyncio.to_thread(server.stop)
            await a.settle(await a.reserve("alice", limits, 10.0, 1), 1.0, 1)  # a notices, charges alone
            await b.settle(await b.reserve("alice", limits, 10.0, 1), 2.0, 1)
            assert not a.shared and not b.shared
            await asyncio.to_thread(server.start)  # empty
            for _ in range(100):
                if a.shared and b.shared:
                    break
                await asyncio.sleep(0.05)
            # the latest spend either saw (15) plus what each charged alone (1 + 2), in any order
            assert float(redis.Redis.from_url(server.url).get("mercato:spent:alice")) == pytest.approx(18.0)
            await a.settle(await a.reserve("alice", limits, 10.0, 1), 1.0, 1)
            assert a.spent("alice") == pytest.approx(19.0)
            for limiter in (a, b):
                await limiter.stop()

        run(story)
