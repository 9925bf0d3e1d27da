"""End to end: the official openai client -> live gateway -> simulated engine servers, every policy."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from gateway_live_support import CLUSTER, config_for, engines, gateway, ledger_rows
from mercato.gateway.core.policies import POLICY_NAMES
from mercato.gateway.live.ledger_store import open_ledger_summary
from mercato.workloads import dialogue_messages, synthetic_dialogues

DIALOGUES = synthetic_dialogues("coqa", n=3, seed=0, turns=2)


@pytest.fixture(scope="module")
def cluster():
    with engines(speed=20.0) as urls:
        yield urls


def client_for(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def run_dialogue(client: openai.OpenAI, index: int) -> list[dict]:
    """One dialogue, turn after turn, streaming for odd dialogues; returns what each turn saw."""
    dialogue = DIALOGUES[index]
    stream = index % 2 == 1
    replies: list[str] = []
    seen = []
    for turn in range(1, len(dialogue.turns) + 1):
        messages = dialogue_messages(dialogue, turn, replies)
        extra = {"mercato": {"domain": dialogue.domain, "gold_answer": dialogue.turns[turn - 1].answer,
                             "bid": 1.0 + index, "delta": 0.5}}
        headers = {"X-Mercato-Dialogue-Id": dialogue.dialogue_id, "X-Mercato-Turn-Number": str(turn)}
        if stream:
            raw = client.chat.completions.with_raw_response.create(
                model="mercato", messages=messages, max_tokens=32, stream=True,
                stream_options={"include_usage": True}, extra_body=extra, extra_headers=headers)
            parts, usage = [], None
            for chunk in raw.parse():
                if chunk.usage is not None:
                    usage = chunk.usage
                parts.extend(c.delta.content or "" for c in chunk.choices)
            text = "".join(parts)
        else:
            raw = client.chat.completions.with_raw_response.create(
                model="mercato", messages=messages, max_tokens=32, extra_body=extra, extra_headers=headers)
            reply = raw.parse()
            text, usage = reply.choices[0].message.content, reply.usage
            assert reply.model == CLUSTER[raw.headers["x-mercato-backend"]]  # the serving model's name
        assert usage is not None and usage.prompt_tokens > 0
        seen.append({"id": raw.headers["x-mercato-request-id"], "backend": raw.headers["x-mercato-backend"],
                     "text": text, "prompt_tokens": usage.prompt_tokens,
                     "cached": usage.prompt_tokens_details.cached_tokens})
        replies.append(text)
    return seen


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_policy_serves_stream_and_non_stream_and_bills_each_request_once(cluster, tmp_path, policy):
    db = tmp_path / "ledger.sqlite"
    config = config_for(cluster, db, policy={"name": policy, "seed": 1})
    with gateway(config) as (url, gw):
        client = client_for(url)
        with ThreadPoolExecutor(len(DIALOGUES)) as pool:
            seen = [s for result in pool.map(lambda i: run_dialogue(client, i), range(len(DIALOGUES)))
                    for s in result]
        pinned = client.chat.completions.with_raw_response.create(
            model="qwen3-32b", messages=[{"role": "user", "content": "Which model are you?"}], max_tokens=8)
        assert pinned.headers["x-mercato-backend"] == "large"
        assert pinned.parse().mercato["payment"] >= pinned.parse().mercato["cost"]
        assert gw.router.snapshot()["pending"] == 0
        deadline = time.monotonic() + 2.0  # learning runs between requests, at most 20 ms behind
        while gw.router.snapshot()["unlearned"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gw.router.snapshot()["unlearned"] == 0
    rows = {r["request_id"]: r for r in ledger_rows(db)}
    ids = [s["id"] for s in seen] + [pinned.headers["x-mercato-request-id"]]
    assert len(rows) == len(ids) == len(set(ids))  # one record per request, none twice, none lost
    assert set(rows) == set(ids)
    for s in seen:
        row = rows[s["id"]]
        assert s["text"] and row["backend"] == s["backend"] and row["policy"] == policy
        assert (row["prompt_tokens"], row["cached_tokens"]) == (s["prompt_tokens"], s["cached"])
    for row in rows.values():
        assert row["surplus"] >= 0 and row["payment"] >= row["cost"] - 1e-12
    summary = open_ledger_summary(db)
    assert summary["weak_budget_balance"] and summary["overall"]["requests"] == len(ids)


def test_streaming_without_include_usage_gets_no_usage_chunk(cluster, tmp_path):
    with gateway(config_for(cluster, tmp_path / "l.sqlite")) as (url, _):
        chunks = list(client_for(url).chat.completions.create(
            model="mercato", messages=[{"role": "user", "content": "Hello there?"}], max_tokens=16,
            stream=True))
    assert chunks and all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}


def test_models_health_ready_and_metrics(cluster, tmp_path):
    with gateway(config_for(cluster, tmp_path / "l.sqlite")) as (url, _):
        client = client_for(url)
        ids = {m.id for m in client.models.list()}
        assert ids == {"mercato", "qwen3-4b", "qwen3-8b", "qwen3-32b"}
        client.chat.completions.create(model="mercato", messages=[{"role": "user", "content": "Hi?"}],
                                       max_tokens=8)
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        text = httpx.get(f"{url}/metrics").text
    for name in ("mercato_requests_total", "mercato_request_latency_seconds_bucket",
                 "mercato_ttft_seconds_bucket", "mercato_batch_size_bucket", "mercato_auction_seconds_bucket",
                 "mercato_payments_credits_total", 'mercato_backend_in_flight{backend="large"}',
                 'mercato_backend_circuit_state{backend="medium"}'):
        assert name in text, name
    assert 'mercato_requests_total{backend="' in text and 'status="200",stream="false"} 1.0' in text
