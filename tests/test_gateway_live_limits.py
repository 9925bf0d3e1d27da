"""Budgets and rate limits on the live gateway: 429 with Retry-After, 402 that clients do not retry,
replicas sharing one buyer's budget through a real Redis, a Redis outage and its recovery, and
API keys an operator adds in Redis at runtime."""

from __future__ import annotations

import json
import logging
import math
import re
import threading
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
from mercato.bench.peers import mercato_process
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
    """A gateway config whose buyer alice has the limits ``alice``; ``sections`` add or replace."""
    return config_for(urls, db, cluster={"small": "qwen3-4b", "medium": "qwen3-8b"},
                      **({"api_keys": {KEY: "alice"}, "logging": {"access_log": False}} | sections
                         | {"limits": {"window_s": WINDOW_S, "buyers": {"alice": alice}}
                            | sections.get("limits", {})}))


def ask(client: httpx.Client, max_tokens: int = 8, key: str = KEY, stream: bool = False) -> httpx.Response:
    return client.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": "mercato", "messages": MESSAGES, "max_tokens": max_tokens,
                             "stream": stream})


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
            statuses = list(pool.map(lambda i: ask(clients[i % 2], stream=i % 3 == 0).status_code, range(80)))
    assert set(statuses) == {200, 402}
    payments = [r["payment"] for db in dbs for r in ledger_rows(db)]
    assert all(ledger_rows(db) for db in dbs)  # both replicas served
    assert sum(payments) <= budget + max(payments)
    assert sum(payments) > budget / 2  # the budget was used, not refused from the start
    r = redis.Redis.from_url(server.url)
    assert float(r.get("mercato:spent:alice") or 0) == pytest.approx(sum(payments))
    assert float(r.get("mercato:reserved:alice")) == pytest.approx(0.0)  # every reservation released


def test_redis_stopped_under_load_replicas_serve_on_local_shares_then_resync(cluster, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="mercato.gateway")
    bob = "sk-bob-9876543210"
    dbs = [tmp_path / "a.sqlite", tmp_path / "b.sqlite"]
    with embedded_redis() as srv, ExitStack() as stack:
        gateways = [stack.enter_context(gateway(limited(
            cluster, db, {"rpm": 4, "budget": 1000.0}, api_keys={KEY: "alice", bob: "bob"},
            limits={"replicas": 2, "buyers": {"alice": {"rpm": 4, "budget": 1000.0},
                                              "bob": {"budget": 1e6, "tpm": 10**6}}},
            state={"redis_url": srv.url}))) for db in dbs]
        clients = [stack.enter_context(httpx.Client(base_url=url, timeout=30)) for url, _ in gateways]
        limiters = [gw.enforcement.limiter for _, gw in gateways]
        statuses: list[int] = []
        stop = threading.Event()

        def load(i: int) -> None:
            while not stop.is_set():
                statuses.append(ask(clients[i % 2], key=bob).status_code)

        with ThreadPoolExecutor(4) as pool:
            for i in range(4):
                pool.submit(load, i)
            time.sleep(0.3)
            srv.stop()
            fresh_window()
            # served on local limits: half of alice's 4 requests per window, as one of two replicas
            assert [ask(clients[0]).status_code for _ in range(3)] == [200, 200, 429]
            assert not any(lim.shared for lim in limiters)
            served_in_outage = len(statuses)
            srv.start()  # empty: the replicas must bring back the spend
            deadline = time.monotonic() + 10
            while not all(lim.shared for lim in limiters) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            stop.set()
        assert all(lim.shared for lim in limiters)
        assert len(statuses) > served_in_outage > 0 and set(statuses) == {200}
        messages = [r.getMessage() for r in caplog.records]
        limits = [m for m in messages if "budgets and rate limits" in m]
        assert len([m for m in limits if "unreachable" in m and "share 1/2" in m]) == 2  # once per replica
        assert len([m for m in limits if "reachable again" in m]) == 2
        # what both replicas charged, before, during and after the outage, is Redis's spend again
        paid = sum(r["payment"] for db in dbs for r in ledger_rows(db) if r["buyer"] == "bob")
        r = redis.Redis.from_url(srv.url)
        deadline = time.monotonic() + 5
        while abs(float(r.get("mercato:spent:bob") or 0) - paid) > 1e-6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert float(r.get("mercato:spent:bob")) == pytest.approx(paid)
        fresh_window()
        # shared again: the whole limit of 4 across both replicas, counted in Redis
        assert [ask(clients[i % 2]).status_code for i in range(5)] == [200, 200, 200, 200, 429]
        window = math.floor(time.time() / WINDOW_S)
        assert int(r.get(f"mercato:req:alice:{window}")) == 4


def test_a_key_added_in_redis_at_runtime_is_accepted_with_its_limits(cluster, server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="mercato.gateway")
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
        bad_key = "sk-typo-in-its-entry"
        r.hset("mercato:keys", key_digest(bad_key), json.dumps({"buyer": "dave", "rmp": 5}))
        time.sleep(0.7)  # three re-reads
        assert ask(client, key=bad_key).status_code == 401
    warned = [m for m in caplog.messages if "ignoring runtime API key" in m]
    assert len(warned) == 1 and "rmp: Extra inputs are not permitted" in warned[0]  # once, naming the field


def test_mercato_serve_workers_enforce_one_budget_together(cluster, reachable_dir):
    """`mercato serve --workers 2` (embedded Redis and PostgreSQL): one budget for both workers."""
    budget = 30.0
    config = limited(cluster, reachable_dir / "ledger.sqlite", {"budget": budget})
    with mercato_process(config, reachable_dir / "gateway.yaml", workers=2) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: ask(client), range(60)))
        shared: set[str] = set()
        deadline = time.monotonic() + 10  # each worker leaves its metrics in Redis every second
        while len(shared) < 2 and time.monotonic() < deadline:
            shared = set(re.findall(r'^mercato_limits_shared\{replica="([^"]+)"\} 1\.0$',
                                    client.get("/metrics").text, flags=re.M))
            time.sleep(0.2)
    assert {r.status_code for r in replies} == {200, 402}
    payments = [r.json()["mercato"]["payment"] for r in replies if r.status_code == 200]
    assert budget / 2 < sum(payments) <= budget + max(payments)
    assert len(shared) == 2  # both workers keep the limits in the launcher's embedded Redis
