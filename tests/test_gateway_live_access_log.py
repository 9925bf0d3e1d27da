"""The access log: one line per request, served or refused, with what it cost, in JSON or text."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from gateway_live_support import config_for, engines, gateway, ledger_rows
from mercato.gateway.live.access_log import access_fields, format_line
from mercato.gateway.live.outcomes import Outcome

SOLO = {"solo": "qwen3-4b"}
KEY = "sk-alice-0123"
ASK = {"model": "mercato", "messages": [{"role": "user", "content": "Where did the boat go?"}],
       "max_tokens": 12}
TEXT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


@pytest.fixture(scope="module")
def solo():
    with engines(speed=20.0, cluster=SOLO) as urls:
        yield urls


def serve_a_mix(url: str) -> list[httpx.Response]:
    """A served request, a streamed one, a bad body, a missing key, an unknown model."""
    auth = {"authorization": f"Bearer {KEY}"}
    chat = f"{url}/v1/chat/completions"
    return [httpx.post(chat, json=ASK, headers=auth, timeout=30),
            httpx.post(chat, json=ASK | {"stream": True}, headers=auth, timeout=30),
            httpx.post(chat, json={"model": "mercato", "messages": []}, headers=auth),
            httpx.post(chat, json=ASK),
            httpx.post(chat, json=ASK | {"model": "gpt-9"}, headers=auth)]


def test_json_lines_carry_the_request_and_its_bill_for_every_outcome(solo, tmp_path):
    log = tmp_path / "access.jsonl"
    config = config_for(solo, tmp_path / "l.sqlite", SOLO, api_keys={KEY: "alice"},
                        logging={"format": "json", "file": str(log)})
    with gateway(config) as (url, _):
        responses = serve_a_mix(url)
    assert [r.status_code for r in responses] == [200, 200, 400, 401, 404]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 5  # the gateway stopped: everything was written
    by_id = {line["request_id"]: line for line in lines if line["request_id"]}
    rows = {row["request_id"]: row for row in ledger_rows(tmp_path / "l.sqlite")}
    assert set(by_id) == set(rows) == {r.headers["x-mercato-request-id"] for r in responses[:2]}
    for served, stream in zip(responses[:2], (False, True), strict=True):
        request_id = served.headers["x-mercato-request-id"]
        line, row = by_id[request_id], rows[request_id]
        assert line["status"] == 200 and line["stream"] is stream and line["endpoint"] == "chat.completions"
        assert (line["buyer"], line["model"], line["backend"]) == ("alice", "mercato", "solo")
        assert 0 < line["ttft_ms"] <= line["latency_ms"] and line["tpot_ms"] > 0
        assert (line["prompt_tokens"], line["cached_tokens"], line["completion_tokens"]) == (
            row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"])
        assert line["cost"] == pytest.approx(row["cost"]) and line["payment"] == pytest.approx(row["payment"])
        assert "error" not in line and line["failovers"] == 0
    errors = {line["status"]: line for line in lines if line["status"] != 200}
    assert errors[400]["error"] == "invalid_value" and "messages" in errors[400]["message"]
    assert errors[400]["buyer"] == "alice"  # authenticated before the body was refused
    assert errors[401]["error"] == "invalid_api_key" and errors[401]["buyer"] is None
    assert errors[404]["error"] == "model_not_found"
    for line in errors.values():
        assert line["backend"] is None and line["cost"] is None and line["ttft_ms"] is None
        assert line["latency_ms"] > 0 and line["ts"].endswith("Z")


def test_text_lines_are_key_value_pairs(solo, tmp_path):
    log = tmp_path / "access.log"
    config = config_for(solo, tmp_path / "l.sqlite", SOLO, logging={"file": str(log)})
    with gateway(config) as (url, _):
        ok = httpx.post(f"{url}/v1/chat/completions", json=ASK | {"user": "bob"}, timeout=30)
        bad = httpx.post(f"{url}/v1/chat/completions", json=ASK | {"max_tokens": -1})
    assert (ok.status_code, bad.status_code) == (200, 400)
    served, refused = (dict(TEXT_PAIR.findall(line)) for line in log.read_text().splitlines())
    assert served["request_id"] == ok.headers["x-mercato-request-id"] and served["buyer"] == "bob"
    assert served["status"] == "200" and served["backend"] == "solo" and served["stream"] == "false"
    assert float(served["cost"]) > 0 and "error" not in served
    assert refused["status"] == "400" and refused["request_id"] == "-" and refused["backend"] == "-"
    assert json.loads(refused["message"]) == bad.json()["error"]["message"]  # quoted, spaces and all


def test_the_access_log_can_be_turned_off(solo, tmp_path):
    config = config_for(solo, tmp_path / "l.sqlite", SOLO, logging={"access_log": False})
    with gateway(config) as (url, gw):
        assert httpx.post(f"{url}/v1/chat/completions", json=ASK, timeout=30).status_code == 200
        assert gw.access_log is None
        assert 'status="200"' in httpx.get(f"{url}/metrics").text  # metrics are counted all the same


def test_tpot_is_the_time_per_token_after_the_first():
    o = Outcome(200, started=10.0, ended=10.5, time=0.0, first_token_at=10.1, completion_tokens=5)
    assert o.ttft_s == pytest.approx(0.1) and o.tpot_s == pytest.approx(0.1) and o.latency_s == 0.5
    assert Outcome(200, 10.0, 10.5, 0.0, first_token_at=10.1, completion_tokens=1).tpot_s is None
    fields = access_fields(o)
    assert (fields["ttft_ms"], fields["tpot_ms"], fields["latency_ms"]) == (100.0, 100.0, 500.0)
    assert format_line(fields, "text").startswith("ts=1970-01-01T00:00:00.000Z endpoint=chat.completions ")


def test_a_client_that_leaves_mid_stream_is_logged_as_499(tmp_path):
    log = tmp_path / "access.jsonl"
    with engines(speed=1.0, cluster=SOLO) as real_time, gateway(config_for(  # 400 tokens: seconds
            real_time, tmp_path / "l.sqlite", SOLO, logging={"format": "json", "file": str(log)})
    ) as (url, gw):
        body = ASK | {"stream": True, "max_tokens": 400}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
            request_id = response.headers["x-mercato-request-id"]
            next(response.iter_raw())  # the first chunk arrived; then the client hangs up
        deadline = time.monotonic() + 10.0
        while gw.router.snapshot()["pending"]:  # the gateway notices and settles the request
            assert time.monotonic() < deadline
            time.sleep(0.02)
    (line,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert (line["request_id"], line["status"], line["backend"]) == (request_id, 499, "solo")
    assert line["ttft_ms"] > 0 and line["cost"] is None and "error" not in line


def test_every_routed_endpoint_is_logged_under_its_own_name(solo, tmp_path):
    log = tmp_path / "access.jsonl"
    config = config_for(solo, tmp_path / "e.sqlite", SOLO, api_keys={KEY: "alice"},
                        logging={"format": "json", "file": str(log)})
    auth = {"authorization": f"Bearer {KEY}"}
    with gateway(config) as (url, _):
        text = {"model": "mercato", "prompt": "Once", "max_tokens": 4}
        done = [httpx.post(f"{url}/v1/completions", json=text, headers=auth, timeout=30),
                httpx.post(f"{url}/v1/embeddings", json={"model": "mercato", "input": "a boat"}, headers=auth,
                           timeout=30),
                httpx.post(f"{url}/v1/embeddings", json={"model": "mercato"}, headers=auth)]
    assert [r.status_code for r in done] == [200, 200, 400]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(line["endpoint"], line["status"]) for line in lines] == [
        ("completions", 200), ("embeddings", 200), ("embeddings", 400)]
