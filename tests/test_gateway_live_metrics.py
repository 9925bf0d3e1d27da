"""/metrics after real requests: per backend and model, per buyer, tokens, TTFT, TPOT, latency."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway_live_support import config_for, engines, gateway, ledger_rows

DUO = {"small": "qwen3-4b", "big": "qwen3-8b"}
ASK = {"messages": [{"role": "user", "content": "Where did the boat go?"}], "max_tokens": 12}


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_requests_tokens_times_and_spend_are_labelled_and_bounded(tmp_path):
    db = tmp_path / "l.sqlite"
    with engines(speed=20.0, cluster=DUO) as urls, \
            gateway(config_for(urls, db, DUO, api_keys={"sk-alice-0123": "alice"})) as (url, _):
        chat = f"{url}/v1/chat/completions"
        alice = {"authorization": "Bearer sk-alice-0123"}
        codes = [httpx.post(chat, json=ASK | {"model": "qwen3-4b"}, headers=alice, timeout=30).status_code,
                 httpx.post(chat, json=ASK | {"model": "qwen3-8b", "stream": True}, headers=alice,
                            timeout=30).status_code,
                 httpx.post(chat, json=ASK | {"model": "qwen3-8b"}, headers=alice, timeout=30).status_code,
                 httpx.post(chat, json=ASK | {"model": "qwen3-4b"}).status_code,  # no key
                 httpx.post(chat, json={"model": "x"}, headers=alice).status_code]
        found = samples(httpx.get(f"{url}/metrics").text)  # no wait: a scrape counts every finished request
    assert codes == [200, 200, 200, 401, 400]
    small, big = {"backend": "small", "model": "qwen3-4b"}, {"backend": "big", "model": "qwen3-8b"}
    none = {"backend": "none", "model": "none"}
    assert value(found, "mercato_requests_total", **small, status="200", stream="false") == 1
    assert value(found, "mercato_requests_total", **big, status="200", stream="true") == 1
    assert value(found, "mercato_requests_total", **big, status="200", stream="false") == 1
    assert value(found, "mercato_requests_total", **none, status="401", stream="false") == 1
    assert value(found, "mercato_requests_total", **none, status="400", stream="false") == 1
    rows = ledger_rows(db)
    for labels, backend in ((small, "small"), (big, "big")):
        mine = [r for r in rows if r["backend"] == backend]
        for metric, column in (("mercato_prompt_tokens_total", "prompt_tokens"),
                               ("mercato_cached_prompt_tokens_total", "cached_tokens"),
                               ("mercato_completion_tokens_total", "completion_tokens")):
            assert value(found, metric, **labels) == sum(r[column] for r in mine), (metric, backend)
        assert value(found, "mercato_payments_credits_total", **labels) == pytest.approx(
            sum(r["payment"] for r in mine))
        assert value(found, "mercato_cost_credits_total", **labels) == pytest.approx(
            sum(r["cost"] for r in mine))
        for histogram in ("mercato_ttft_seconds", "mercato_tpot_seconds", "mercato_request_latency_seconds"):
            assert value(found, f"{histogram}_count", **labels) == len(mine), (histogram, backend)
            assert value(found, f"{histogram}_sum", **labels) > 0
    assert value(found, "mercato_request_latency_seconds_count", **none) == 2  # refused ones take time too
    assert value(found, "mercato_ttft_seconds_count", **none) == 0
    assert value(found, "mercato_buyer_spend_credits_total", buyer="alice") == pytest.approx(
        sum(r["payment"] for r in rows))
    assert value(found, "mercato_buyer_requests_total", buyer="alice", status="200") == 3
    assert value(found, "mercato_buyer_requests_total", buyer="alice", status="400") == 1
    assert value(found, "mercato_buyer_requests_total", buyer="none", status="401") == 1


def test_buyers_the_config_does_not_name_share_one_label(tmp_path):
    with engines(speed=20.0, cluster={"small": "qwen3-4b"}) as urls, \
            gateway(config_for(urls, tmp_path / "l.sqlite", {"small": "qwen3-4b"})) as (url, _):
        chat = f"{url}/v1/chat/completions"
        for user in ("mallory", "trudy", None):
            body = ASK | {"model": "mercato"} | ({"user": user} if user else {})
            assert httpx.post(chat, json=body, timeout=30).status_code == 200
        found = samples(httpx.get(f"{url}/metrics").text)
    buyers = {dict(labels)["buyer"] for name, labels in found if name == "mercato_buyer_requests_total"}
    assert buyers == {"other", "anonymous"}
    assert value(found, "mercato_buyer_requests_total", buyer="other", status="200") == 2
    assert value(found, "mercato_buyer_spend_credits_total", buyer="anonymous") > 0
