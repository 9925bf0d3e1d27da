"""Rejections over HTTP: bad input is a 4xx with an OpenAI error object, never a 500; 401; 429."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
import yaml
from typer.testing import CliRunner

from gateway_live_support import backend_entry, config_for, engines, gateway, ledger_rows
from mercato.cli import app as cli
from mercato.gateway.live.config import parse_config

CLUSTER = {"medium": "qwen3-8b"}
GOOD = {"model": "mercato", "messages": [{"role": "user", "content": "Hello?"}], "max_tokens": 8}


@pytest.fixture(scope="module")
def engine_urls():
    with engines(speed=20.0, cluster=CLUSTER) as urls:
        yield urls


@pytest.fixture(scope="module")
def live(engine_urls, tmp_path_factory):
    db = tmp_path_factory.mktemp("errors") / "ledger.sqlite"
    config = config_for(engine_urls, db, CLUSTER, server={"max_body_bytes": 4096})
    with gateway(config) as (url, _):
        yield url, db


def is_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


@pytest.mark.parametrize(("content", "headers", "param"), [
    (b"{\"model\": \"mercato\", ", {}, None),
    (b"", {}, None),
    (b"\"just a string\"", {}, None),
    (json.dumps({"model": "mercato"}).encode(), {}, "messages"),
    (json.dumps(GOOD | {"messages": []}).encode(), {}, "messages"),
    (json.dumps(GOOD | {"messages": [{"role": "user"}, "oops"]}).encode(), {}, "messages"),
    (json.dumps(GOOD | {"messages": {"role": "user", "content": "x"}}).encode(), {}, "messages"),
    (json.dumps(GOOD | {"max_tokens": "many"}).encode(), {}, "max_tokens"),
    (json.dumps(GOOD | {"stream": "true"}).encode(), {}, "stream"),
    (json.dumps(GOOD | {"mercato": {"bid": -2}}).encode(), {}, "mercato.bid"),
    (json.dumps(GOOD | {"mercato": {"bid": "high"}}).encode(), {}, "mercato.bid"),
    (json.dumps(GOOD | {"mercato": {"delta": 2}}).encode(), {}, "mercato.delta"),
    (json.dumps(GOOD).encode(), {"X-Mercato-Bid": "-1"}, "x-mercato-bid"),
    (json.dumps(GOOD).encode(), {"X-Mercato-Bid": "lots"}, "x-mercato-bid"),
    (json.dumps(GOOD).encode(), {"X-Mercato-Delta": "1.01"}, "x-mercato-delta"),
    (json.dumps(GOOD).encode(), {"X-Mercato-Turn-Number": "-3"}, "X-Mercato-Turn-Number"),
])
def test_bad_input_is_400_with_an_openai_error(live, content, headers, param):
    url, _ = live
    response = httpx.post(f"{url}/v1/chat/completions", content=content,
                          headers={"content-type": "application/json"} | headers)
    error = is_openai_error(response, 400)
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_oversize_body_is_413_with_or_without_a_content_length(live):
    url, _ = live
    big = json.dumps(GOOD | {"messages": [{"role": "user", "content": "x" * 10_000}]}).encode()
    is_openai_error(httpx.post(f"{url}/v1/chat/completions", content=big), 413)

    def chunked():
        for start in range(0, len(big), 1000):
            yield big[start:start + 1000]

    is_openai_error(httpx.post(f"{url}/v1/chat/completions", content=chunked()), 413)


def test_unknown_model_route_and_method_are_openai_errors(live):
    url, _ = live
    error = is_openai_error(httpx.post(f"{url}/v1/chat/completions", json=GOOD | {"model": "gpt-9"}), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    is_openai_error(httpx.get(f"{url}/v1/chat/completions"), 405)
    is_openai_error(httpx.get(f"{url}/v2/nothing"), 404)


def test_the_openai_client_sees_typed_errors_and_nothing_was_billed(live):
    url, db = live
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="mercato", messages=[], max_tokens=4)
    assert info.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="mercato", messages=GOOD["messages"],
                                       extra_body={"mercato": {"bid": -1}})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=GOOD["messages"])
    ok = client.chat.completions.create(model="mercato", messages=GOOD["messages"], max_tokens=4,
                                        extra_headers={"X-Mercato-Bid": "2.5", "X-Mercato-Delta": "0.9"})
    assert ok.choices[0].message.content
    rows = ledger_rows(db)
    assert [r["request_id"] for r in rows] == [ok.mercato["request_id"]]  # rejected requests cost nothing


def test_api_keys_enabled_require_a_valid_bearer_key(engine_urls, tmp_path):
    db = tmp_path / "ledger.sqlite"
    config = config_for(engine_urls, db, CLUSTER, api_keys={"sk-alice-0123456789": "alice"})
    with gateway(config) as (url, _):
        bad_headers = ({}, {"authorization": "Bearer sk-wrong-000000000"},
                       {"authorization": "sk-alice-0123456789"})  # no key, wrong key, no "Bearer"
        for headers in bad_headers:
            error = is_openai_error(httpx.post(f"{url}/v1/chat/completions", json=GOOD, headers=headers), 401)
            assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
        is_openai_error(httpx.get(f"{url}/v1/models"), 401)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="sk-mallory-99999", max_retries=0).models.list()
        alice = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-alice-0123456789", max_retries=0)
        reply = alice.chat.completions.create(**GOOD)
        assert reply.choices[0].message.content
        assert httpx.get(f"{url}/health").status_code == 200  # probes need no key
    assert [r["buyer"] for r in ledger_rows(db)] == ["alice"]


def test_full_batch_queue_answers_429_with_retry_after_and_never_hangs(engine_urls, tmp_path):
    config = config_for(engine_urls, tmp_path / "l.sqlite", CLUSTER,
                        batching={"max_batch_size": 16, "max_wait_ms": 1500, "quiet_ms": 1500,
                                  "queue_limit": 1})
    with gateway(config) as (url, gw):
        first: dict = {}
        waiting = threading.Thread(target=lambda: first.update(
            r=httpx.post(f"{url}/v1/chat/completions", json=GOOD, timeout=30)))
        waiting.start()
        deadline = time.monotonic() + 10
        while len(gw.batcher) == 0:  # the first request sits in the queue for its 1.5 s batch window
            assert time.monotonic() < deadline
            time.sleep(0.005)
        start = time.monotonic()
        refused = httpx.post(f"{url}/v1/chat/completions", json=GOOD, timeout=30)
        assert time.monotonic() - start < 1.0  # refused at once, not after the batch window
        error = is_openai_error(refused, 429)
        assert error["code"] == "queue_full" and int(refused.headers["retry-after"]) >= 1
        waiting.join(30)
        assert first["r"].status_code == 200


def test_serve_rejects_an_invalid_config_naming_the_field(tmp_path):
    bad = tmp_path / "gateway.yaml"
    bad.write_text(yaml.safe_dump({"backends": [
        {"name": "a", "url": "http://127.0.0.1:1/v1", "model": "m", "prices": {"input": 1, "cached_input": 0,
                                                                              "output": 1}},
        {"name": "b", "url": "http://127.0.0.1:2/v1", "model": "m", "capacity": 0,
         "prices": {"input": 1, "cached_input": 0, "output": 1}}]}))
    result = CliRunner().invoke(cli, ["serve", "--config", str(bad)])
    assert result.exit_code != 0
    assert "backends.1.capacity" in result.output


def test_over_capacity_requests_wait_a_bounded_time_then_get_429_and_none_starves(tmp_path):
    # One engine slot, admission of one request per slot, a 300 ms hold; each reply takes about
    # a second of decoding, so the requests behind the first one cannot all get on in time.
    with engines(speed=1.0, cluster=CLUSTER) as urls:
        config = parse_config({
            "backends": [backend_entry(name, CLUSTER[name], u, capacity=1) for name, u in urls.items()],
            "accounting": {"db": str(tmp_path / "l.sqlite")},
            "batching": {"max_inflight_per_slot": 1.0, "max_hold_ms": 300}})
        body = GOOD | {"max_tokens": 48}
        with gateway(config) as (url, gw):
            results: list[tuple[int, float, str | None]] = []

            def send() -> None:
                start = time.monotonic()
                r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
                results.append((r.status_code, time.monotonic() - start, r.headers.get("retry-after")))

            threads = [threading.Thread(target=send) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert gw.outstanding == 0 and len(gw.batcher) == 0
    codes = sorted(code for code, _, _ in results)
    assert codes.count(200) >= 1 and codes.count(429) >= 1 and set(codes) == {200, 429}
    for code, waited, retry_after in results:
        if code == 429:
            assert waited < 2.0 and retry_after is not None and int(retry_after) >= 1
