"""Retries before the first byte, failover on a failing backend, client faults passed through.

The engines are real; a thin ASGI wrapper in front of one of them injects 503s and 429s (with
``Retry-After``), which a simulated engine never produces by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import httpx
import openai
import pytest

from gateway_live_support import backend_entry, gateway, ledger_rows
from mercato.engine import EngineCore, get_profile
from mercato.engine.server import create_app as create_engine_app
from mercato.engine.server import running_server
from mercato.gateway.live.backends import CircuitState
from mercato.gateway.live.config import parse_config

MESSAGES = [{"role": "user", "content": "Where did the boat go?"}]


class Flaky:
    """ASGI app answering the first ``failures`` chat requests with ``status`` (503) and
    ``headers``, then the engine's answer; ``times`` holds when each request arrived."""

    def __init__(self, app: Callable[..., Any], failures: int, status: int = 503,
                 headers: dict[str, str] | None = None) -> None:
        self.app, self.failures, self.posts = app, failures, 0
        self.status = status
        self.headers = [(b"content-type", b"application/json")] + [
            (k.encode(), v.encode()) for k, v in (headers or {}).items()]
        self.times: list[float] = []

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.posts += 1
            self.times.append(time.monotonic())
            if self.posts <= self.failures:
                await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
                await send({"type": "http.response.body", "body": b'{"error": {"message": "overloaded"}}'})
                return
        await self.app(scope, receive, send)


def engine_app(profile: str, seed: int = 0):
    return create_engine_app(EngineCore(get_profile(profile), max_num_seqs=8, seed=seed), profile, speed=20.0)


def config(urls: dict[str, str], db, **sections):
    backends = [backend_entry(name, "qwen3-8b", url) for name, url in urls.items()]
    # no start-up probes: these tests count every request a stub backend receives
    return parse_config({"backends": backends, "accounting": {"db": str(db)},
                         "policy": {"name": "round_robin"}, "prefill_probe": {"enabled": False},
                         "retries": {"max_retries": 2, "backoff_base_s": 0.01}} | sections)


def test_5xx_before_the_first_byte_is_retried_on_the_same_backend(tmp_path):
    flaky = Flaky(engine_app("qwen3-8b"), failures=2)
    with running_server(flaky) as url, gateway(config({"only": url}, tmp_path / "l.sqlite")) as (gw_url, gw):
        client = openai.OpenAI(base_url=f"{gw_url}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="mercato", messages=MESSAGES, max_tokens=8)
        assert reply.choices[0].message.content
        assert reply.mercato["backend"] == "only" and reply.mercato["failovers"] == 0
        assert flaky.posts == 3  # two 503s, then the answer
        assert gw.pool["only"].breaker.state is CircuitState.CLOSED  # the success reset the count
    assert len(ledger_rows(tmp_path / "l.sqlite")) == 1


def test_a_backend_that_keeps_failing_is_left_for_the_next_and_its_breaker_opens(tmp_path):
    flaky = Flaky(engine_app("qwen3-8b"), failures=10**6)
    with ExitStack() as stack:
        bad = stack.enter_context(running_server(flaky))
        good = stack.enter_context(running_server(engine_app("qwen3-8b", seed=1)))
        cfg = config({"bad": bad, "good": good}, tmp_path / "l.sqlite",
                     circuit_breaker={"failure_threshold": 3, "cooldown_s": 600, "health_interval_s": 600})
        gw_url, gw = stack.enter_context(gateway(cfg))
        client = openai.OpenAI(base_url=f"{gw_url}/v1", api_key="unused", max_retries=0)
        replies = [client.chat.completions.create(model="mercato", messages=MESSAGES, max_tokens=8)
                   for _ in range(4)]
        assert all(r.mercato["backend"] == "good" for r in replies)
        assert sum(r.mercato["failovers"] for r in replies) >= 1
        assert gw.pool["bad"].breaker.state is CircuitState.OPEN
        assert flaky.posts == 3  # 1 try + 2 retries opened the breaker; then it was skipped
        assert not gw.router.snapshot()["backends"]["bad"]["healthy"]
    assert {r["backend"] for r in ledger_rows(tmp_path / "l.sqlite")} == {"good"}


def test_a_request_the_backend_rejects_comes_back_as_is_without_failover(tmp_path):
    with running_server(engine_app("qwen3-8b")) as url, \
            gateway(config({"only": url}, tmp_path / "l.sqlite")) as (gw_url, gw):
        too_long = [{"role": "user", "content": "word " * 200_000}]  # beyond the model's context
        response = httpx.post(f"{gw_url}/v1/chat/completions", timeout=30,
                              json={"model": "mercato", "messages": too_long, "max_tokens": 8})
        assert response.status_code == 400
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert gw.pool["only"].breaker.failures == 0
        with pytest.raises(openai.BadRequestError):
            openai.OpenAI(base_url=f"{gw_url}/v1", api_key="unused", max_retries=0).chat.completions.create(
                model="mercato", messages=too_long, max_tokens=8)
        assert gw.router.snapshot()["pending"] == 0
    assert ledger_rows(tmp_path / "l.sqlite") == []


def test_a_429_with_retry_after_is_retried_no_sooner_than_asked(tmp_path):
    flaky = Flaky(engine_app("qwen3-8b"), failures=1, status=429, headers={"retry-after": "1"})
    with running_server(flaky) as url, gateway(config({"only": url}, tmp_path / "l.sqlite")) as (gw_url, gw):
        client = openai.OpenAI(base_url=f"{gw_url}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="mercato", messages=MESSAGES, max_tokens=8)
        assert reply.mercato["backend"] == "only" and reply.mercato["failovers"] == 0
        assert flaky.posts == 2
        assert flaky.times[1] - flaky.times[0] >= 1.0  # the backoff alone would be at most 10 ms
        assert gw.pool["only"].breaker.failures == 0  # a 429 is not a failure of the backend


def test_a_retry_after_beyond_the_cap_fails_over_at_once(tmp_path):
    flaky = Flaky(engine_app("qwen3-8b"), failures=10**6, status=429, headers={"retry-after": "120"})
    with ExitStack() as stack:
        slow = stack.enter_context(running_server(flaky))
        good = stack.enter_context(running_server(engine_app("qwen3-8b", seed=1)))
        cfg = config({"slow": slow, "good": good}, tmp_path / "l.sqlite",
                     retries={"max_retries": 2, "backoff_base_s": 0.01, "retry_after_max_s": 2.0})
        gw_url, _ = stack.enter_context(gateway(cfg))
        client = openai.OpenAI(base_url=f"{gw_url}/v1", api_key="unused", max_retries=0)
        started = time.monotonic()
        replies = [client.chat.completions.create(model="mercato", messages=MESSAGES, max_tokens=8)
                   for _ in range(2)]  # round robin: one of them goes to "slow" first
        assert time.monotonic() - started < 2.0
        assert all(r.mercato["backend"] == "good" for r in replies)
        assert flaky.posts == 1  # asked once, never retried
