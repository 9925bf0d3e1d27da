"""The official openai client against the live gateway: every endpoint it routes or answers.

Chat (streamed and not), completions (streamed and not), embeddings (the client's default base64
and floats, texts and token ids), models.list and models.retrieve, and an infeasible deadline
that the client must not retry. Real simulated engines behind a real gateway on 127.0.0.1.
"""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from gateway_live_support import config_for, engines, gateway, ledger_rows
from mercato.engine.embeddings import DIMENSIONS

CLUSTER = {"small-1": "qwen3-4b", "medium": "qwen3-8b"}
HELLO = [{"role": "user", "content": "Where did the green boat go?"}]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    db = tmp_path_factory.mktemp("openai") / "ledger.sqlite"
    with engines(speed=20.0, cluster=CLUSTER) as urls, gateway(config_for(urls, db, CLUSTER)) as (url, _):
        yield url, db


@pytest.fixture(scope="module")
def client(live):
    return openai.OpenAI(base_url=f"{live[0]}/v1", api_key="unused", max_retries=0, timeout=30)


def test_chat_completion_whole_and_streamed(client):
    reply = client.chat.completions.create(model="mercato", messages=HELLO, max_tokens=12)
    assert reply.object == "chat.completion" and reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 0 and reply.model in CLUSTER.values()
    chunks = list(client.chat.completions.create(model="qwen3-8b", messages=HELLO, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert {c.model for c in chunks} == {"qwen3-8b"}


def test_completion_whole_and_streamed_are_routed_and_billed(live, client):
    raw = client.completions.with_raw_response.create(model="mercato", prompt="Once upon a time",
                                                      max_tokens=10, extra_body={"mercato": {"bid": 2}})
    done = raw.parse()
    assert done.object == "text_completion" and done.id.startswith("cmpl-") and done.choices[0].text
    assert done.usage.prompt_tokens > 0 and done.choices[0].finish_reason in {"stop", "length"}
    assert raw.headers["x-mercato-backend"] in CLUSTER
    pieces = list(client.completions.create(model="qwen3-4b", prompt=["Once upon a time"], max_tokens=10,
                                            stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices)
    assert all(p.usage is None for p in pieces)  # the client did not ask for usage
    billed = {r["request_id"] for r in ledger_rows(live[1])}
    assert raw.headers["x-mercato-request-id"] in billed


def test_embeddings_base64_floats_and_token_ids(live, client):
    default = client.embeddings.create(model="mercato", input=["the green boat", "the green boat sails"])
    assert [len(e.embedding) for e in default.data] == [DIMENSIONS, DIMENSIONS]
    a, b = (np.array(e.embedding) for e in default.data)
    assert np.isclose(np.linalg.norm(a), 1.0, atol=1e-5) and a @ b > 0.5  # shared tokens: close
    assert default.usage.prompt_tokens > 0
    floats = client.embeddings.create(model="qwen3-8b", input="the green boat", encoding_format="float")
    assert np.allclose(floats.data[0].embedding, a, atol=1e-6)  # deterministic per text, either format
    ids = client.embeddings.create(model="mercato", input=[[1, 2, 3], [4]])
    assert len(ids.data) == 2 and ids.usage.prompt_tokens == 4
    raw = httpx.post(f"{live[0]}/v1/embeddings", json={"model": "mercato", "input": "x",
                                                       "encoding_format": "base64"})
    vector = np.frombuffer(base64.b64decode(raw.json()["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (DIMENSIONS,) and raw.json()["mercato"]["request_id"] in {
        r["request_id"] for r in ledger_rows(live[1])}


def test_models_list_and_retrieve(client):
    assert [m.id for m in client.models.list()] == ["mercato", "qwen3-4b", "qwen3-8b"]
    assert client.models.retrieve("qwen3-8b").id == "qwen3-8b"
    assert client.models.retrieve("mercato").owned_by == "mercato"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-9")
    assert info.value.body["code"] == "model_not_found"


def test_an_infeasible_deadline_is_422_and_the_client_does_not_retry(live):
    url, _ = live
    retrying = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=2, timeout=30)

    def refused() -> float:
        text = httpx.get(f"{url}/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("mercato_requests_total{") and 'status="422"' in line)

    before = refused()
    with pytest.raises(openai.UnprocessableEntityError) as info:
        retrying.chat.completions.create(model="mercato", messages=HELLO, max_tokens=4,
                                         extra_body={"mercato": {"deadline_ms": 0.001}})
    assert info.value.body["code"] == "deadline_infeasible"
    assert info.value.body["param"] == "mercato.deadline_ms"
    assert refused() == before + 1  # one request reached the gateway: not retried
    # the same deadline in the header, on completions
    with pytest.raises(openai.UnprocessableEntityError):
        retrying.completions.create(model="mercato", prompt="hi",
                                    extra_headers={"X-Mercato-Deadline-Ms": "0.001"})
