"""Budgets and rate limits on the live gateway: 429 with Retry-After, 402 that clients do not retry,
replicas sharing one buyer's budget through a real Redis, a Redis outage and its recovery, and
API keys an operator adds in Redis at runtime."""

from __future__ import annotations

import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from gateway_live_support import config_for, engines, gateway, ledger_rows
from mercato.gateway.live.api_keys import key_digest
from mercato.gateway.live.embedded_redis import embedded_redis

KEY = "sk-alice-0123456789"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
WINDOW_S = 2.0


@pytest.fixture(scope="module")
def cluster():
    with engines(speed=50.0, cluster={"small": "qwen3-4b", "medium": "qwen3-8b"}) as urls:
        yield urls


@pytest.fixture(scope="module")
def server():
    with embedded_redis() as srv:
        yield srv


def limited(urls: dict[str, str], db: Path, alice: dict[str, Any], **sections: Any) -> Any:
    return config_for(urls, db, cluster={"small": "qwen3-4b", "medium": "qwen3-8b"},
                      api_keys={KEY: "alice"}, logging={"access_log": False},
                      limits={"window_s": WINDOW_S, "buyers": {"alice": alice},
                              **sections.pop("limits", {})}, **sections)


def ask(client: httpx.Client, max_tokens: int = 8, key: str = KEY) -> httpx.Response:
    return client.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": "mercato", "messages": MESSAGES, "max_tokens": max_tokens})


def fresh_window() -> None:
    """Sleep to the start of the next rate window, so a test's burst falls in one window."""
    time.sleep(WINDOW_S - time.time() % WINDOW_S + 0.01)


def test_requests_per_window_refused_with_retry_after_then_admitted(cluster, tmp_path):
    with gateway(limited(cluster, tmp_path / "l.sqlite", {"rpm": 2})) as (url, gw), \
            httpx.Client(base_url=url, timeout=30) as client:
        fresh_window()
        assert [ask(client).status_code for _ in range(2)] == [200, 200]
        refused = ask(client)
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= math.ceil(WINDOW_S)
        time.sleep(wait)
        assert ask(client).status_code == 200
        gw.reporter.flush()
        assert gw.metrics.limit_rejections.labels("alice", "rpm")._value.get() == 1


def test_tokens_per_window_reserve_max_tokens_then_settle_to_usage(cluster, tmp_path):
    with gateway(limited(cluster, tmp_path / "l.sqlite", {"tpm": 300})) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as client:
        fresh_window()
        first = ask(client, max_tokens=16)
        assert first.status_code == 200
        used = first.json()["usage"]["total_tokens"]
        assert used < 100
        # reserved at admission: prompt + max_tokens; 290 more do not fit beside what was used
        refused = ask(client, max_tokens=290)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "tokens"
        # what the first request did not use was given back: a small one still fits
        assert ask(client, max_tokens=16).status_code == 200
        time.sleep(int(refused.headers["retry-after"]))
        # alone in an unused window, a request larger than the whole limit is admitted
        assert ask(client, max_tokens=400).status_code == 200


def test_spent_budget_is_402_insufficient_quota_and_the_sdk_does_not_retry(cluster, tmp_path):
    db = tmp_path / "l.sqlite"
    with gateway(limited(cluster, db, {"budget": 20.0})) as (url, gw):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=3, timeout=30)
        served = 0
        with pytest.raises(openai.APIStatusError) as info:
            for _ in range(100):
                client.chat.completions.create(model="mercato", messages=MESSAGES, max_tokens=8)
                served += 1
        assert info.value.status_code == 402
        assert info.value.body["type"] == "insufficient_quota"  # type: ignore[index]
        assert served >= 2
        gw.reporter.flush()
        assert gw.metrics.buyer_requests.labels("alice", "402")._value.get() == 1  # asked once, not retried
        assert gw.metrics.limit_rejections.labels("alice", "budget")._value.get() == 1
        assert 0.0 <= gw.enforcement.limiter.spent("alice") <= 20.0
    paid = sum(r["payment"] for r in ledger_rows(db))
    assert 0.0 < paid <= 20.0


def test_two_replicas_racing_on_one_budget_charge_at_most_one_request_over_it(cluster, server, tmp_path):
    budget = 40.0
    dbs = [tmp_path / "a.sqlite", tmp_path / "b.sqlite"]
    redis.Redis.from_url(server.url).flushall()
    with ExitStack() as stack:
        urls = [stack.enter_context(gateway(limited(cluster, db, {"budget": budget}, limits={"replicas": 2},
                                                    state={"redis_url": server.url})))[0] for db in dbs]
        clients = [stack.enter_context(httpx.Client(base_url=u, timeout=30)) for u in urls]
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda i: ask(clients[i % 2]).status_code, range(80)))
    assert set(statuses) == {200, 402}
    payments = [r["payment"] for db in dbs for r in ledger_rows(db)]
    assert all(ledger_rows(db) for db in dbs)  # both replicas served
    assert sum(payments) <= budget + max(payments)
    assert sum(payments) > budget / 2  # the budget was used, not refused from the start
    assert float(redis.Redis.from_url(server.url).get("mercato:spent:alice") or 0) == pytest.approx(
        sum(payments))


def test_redis_outage_falls_back_to_local_shares_and_recovers(cluster, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="mercato.gateway")
    with embedded_redis() as srv, ExitStack() as stack:
        config = limited(cluster, tmp_path / "l.sqlite", {"rpm": 4, "budget": 1000.0}, limits={"replicas": 2},
                         state={"redis_url": srv.url})
        url, gw = stack.enter_context(gateway(config))
        client = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        assert ask(client).status_code == 200
        spent_before = float(redis.Redis.from_url(srv.url).get("mercato:spent:alice"))
        srv.stop()
        fresh_window()
        # served on local limits: half of the 4 requests per window, as one of two replicas
        assert [ask(client).status_code for _ in range(3)] == [200, 200, 429]
        assert gw.enforcement.limiter.shared is False
        down = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(down) == 1 and "1/2" in down[0].getMessage()
        srv.start()  # empty: the replica must bring back the spend
        deadline = time.monotonic() + 10
        while not gw.enforcement.limiter.shared and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gw.enforcement.limiter.shared
        assert len([r for r in caplog.records if "answers again" in r.getMessage()]) == 1
        spent = float(redis.Redis.from_url(srv.url).get("mercato:spent:alice"))
        assert spent == pytest.approx(gw.enforcement.limiter.spent("alice"))
        assert spent > spent_before
        fresh_window()
        # shared again: the whole limit of 4, counted in Redis
        assert [ask(client).status_code for _ in range(5)] == [200, 200, 200, 200, 429]
        window = math.floor(time.time() / WINDOW_S)
        assert int(redis.Redis.from_url(srv.url).get(f"mercato:req:alice:{window}")) == 4


def test_a_key_added_in_redis_at_runtime_is_accepted_with_its_limits(cluster, server, tmp_path):
    r = redis.Redis.from_url(server.url)
    r.flushall()
    config = limited(cluster, tmp_path / "l.sqlite", {}, limits={"runtime_keys": True, "keys_refresh_s": 0.2},
                     state={"redis_url": server.url})
    new_key = "sk-carol-runtime-42"
    with gateway(config) as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        assert ask(client, key=new_key).status_code == 401
        r.hset("mercato:keys", key_digest(new_key), json.dumps({"buyer": "carol", "rpm": 1}))
        fresh_window()
        assert ask(client, key=new_key).status_code == 200
        assert ask(client, key=new_key).status_code == 429  # with its own limit
        assert ask(client).status_code == 200  # the config's key still works
        r.hdel("mercato:keys", key_digest(new_key))
        time.sleep(0.5)  # re-read: the key is gone
        assert ask(client, key=new_key).status_code == 401
