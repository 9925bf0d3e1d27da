"""The engine's HTTP face: the official openai client, streaming pacing, cached tokens, error shapes."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.engine import EngineCore, get_profile
from mercato.engine.server import create_app, running_server

MODEL = "sim-qwen3-8b"
PASSAGE = "The green boat left the quiet harbour before dawn and the old keeper watched it go. " * 25


@pytest.fixture(scope="module")
def base_url():
    core = EngineCore(get_profile("qwen3-8b"), seed=0)
    with running_server(create_app(core, MODEL, speed=20.0)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=30)


def gold(answer: str) -> dict:
    return {"mercato": {"domain": "coqa", "gold_answer": answer, "bid": 1.0}}


def test_non_streaming_response_is_accepted_by_the_openai_client(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say something."}], max_tokens=32,
        extra_body=gold("something"))
    assert reply.object == "chat.completion" and reply.model == MODEL
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content
    assert reply.choices[0].finish_reason in {"stop", "length"}
    usage = reply.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert 1 <= usage.completion_tokens <= 32 and usage.prompt_tokens_details.cached_tokens == 0


def test_streaming_with_usage_is_accepted_by_the_openai_client(client):
    messages = [{"role": "system", "content": PASSAGE * 4}, {"role": "user", "content": "Who watched?"}]
    start = time.perf_counter()
    stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                            stream_options={"include_usage": True},
                                            extra_body={"mercato": {"domain": "hotpotqa"}})
    content, arrivals, finish, usage = [], [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                content.append(choice.delta.content)
                arrivals.append(time.perf_counter() - start)
            finish = choice.finish_reason or finish
    assert finish in {"stop", "length"} and usage is not None
    assert len(content) >= 2  # the reply is spread over the decode, not sent in one piece
    # the first content arrives no sooner than the simulated prefill of the uncached tokens (speed 20)
    uncached = usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens
    assert uncached > 2000
    assert arrivals[0] >= uncached / get_profile("qwen3-8b").prefill_tokens_per_s / 20.0 * 0.9
    assert arrivals[-1] > arrivals[0]
    assert usage.completion_tokens >= 2


def test_cached_tokens_grow_across_turns_over_http(client):
    messages = [{"role": "system", "content": "Dialogue 3.\n" + PASSAGE}]  # a prefix no other test sent
    cached = []
    for turn, question in enumerate(["Who left?", "When?", "Who watched?"]):
        messages.append({"role": "user", "content": question})
        reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=48,
                                               extra_body=gold(f"answer {turn}"))
        cached.append(reply.usage.prompt_tokens_details.cached_tokens)
        assert cached[-1] < reply.usage.prompt_tokens
        messages.append({"role": "assistant", "content": reply.choices[0].message.content})
    assert cached[0] == 0 and cached[0] < cached[1] < cached[2]


def test_models_health_and_metrics(base_url, client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert httpx.get(f"{base_url}/health").status_code == 200
    text = httpx.get(f"{base_url}/metrics").text
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:gpu_prefix_cache_hit_rate", "vllm:request_success_total",
                 "mercato:engine_requests_submitted_total"):
        samples = [line for line in text.splitlines() if line.startswith(name + "{")]
        assert samples and all(f'model_name="{MODEL}"' in line for line in samples)


def error_of(base_url: str, body: bytes) -> tuple[int, dict]:
    response = httpx.post(f"{base_url}/v1/chat/completions", content=body,
                          headers={"content-type": "application/json"})
    return response.status_code, response.json()


@pytest.mark.parametrize(("body", "needle"), [
    (b'{"messages": [', "Malformed JSON"),
    (b'["not", "an", "object"]', "JSON object"),
    (b'{"model": "' + MODEL.encode() + b'"}', "messages"),
    (b'{"messages": []}', "messages"),
    (b'{"messages": "hello"}', "messages"),
    (b'{"messages": [{"role": "user", "content": 42}]}', "content"),
    (b'{"messages": [{"role": "wizard", "content": "hi"}]}', "role"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}', "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "stream": [1]}', "stream"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "mercato": {"domain": 5}}', "domain"),
    (json.dumps({"messages": [{"role": "user", "content": "x" * 20000}]}).encode(), "maximum context length"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}).encode(),
     "maximum context length"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": Infinity}', "max_tokens"),
    (b'{"messages": [{"role": "user", "content": NaN}]}', "content"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "n": 2}', "n must be 1"),
])
def test_bad_input_gets_vllm_400_errors(base_url, body, needle):
    status, payload = error_of(base_url, body)
    assert status == 400
    assert payload["object"] == "error" and payload["type"] == "BadRequestError"
    assert payload["code"] == 400 and payload["param"] is None
    assert needle in payload["message"]


def test_unknown_model_is_404_and_the_client_raises(base_url, client):
    body = b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}'
    status, payload = error_of(base_url, body)
    assert status == 404 and payload["type"] == "NotFoundError" and "gpt-9" in payload["message"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])


def test_zero_speed_engine_answers_without_simulated_delay():
    core = EngineCore(get_profile("qwen3-32b"))
    with running_server(create_app(core, "slow-model", speed=0)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        start = time.perf_counter()
        reply = client.chat.completions.create(
            model="slow-model", messages=[{"role": "user", "content": PASSAGE * 6}],
            extra_body={"mercato": {"domain": "hotpotqa"}})
        elapsed = time.perf_counter() - start
        stream = client.chat.completions.create(model="slow-model", stream=True,
                                                messages=[{"role": "user", "content": "hi"}])
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    # simulated: a ~3,500-token prefill at ~1,900 tokens/s plus tens of decode steps, seconds in all
    assert core.stats.generation_tokens >= reply.usage.completion_tokens
    assert core.clock > 1.5 > elapsed


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
messages_values = st.one_of(
    json_values,
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "bot", 3]),
                                    "content": json_values}), max_size=3))


@settings(max_examples=60)
@given(st.fixed_dictionaries({}, optional={
    "model": st.sampled_from([MODEL, "other", None, 7]), "messages": messages_values, "stream": json_values,
    "max_tokens": json_values, "max_completion_tokens": json_values, "n": json_values,
    "stream_options": json_values, "mercato": json_values}))
def test_arbitrary_bodies_never_cause_a_server_error(fuzz_client, body):
    response = fuzz_client.post("/v1/chat/completions", json=body)
    assert response.status_code in {200, 400, 404}
    if response.status_code != 200:
        assert response.json()["object"] == "error"


@pytest.fixture(scope="module")
def fuzz_client():
    app = create_app(EngineCore(get_profile("qwen3-4b")), MODEL, speed=0)
    with TestClient(app) as client:
        yield client


def test_completions_whole_and_streamed_like_vllm(base_url, client):
    done = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8)
    assert done.object == "text_completion" and done.choices[0].text and done.usage.prompt_tokens > 0
    again = client.completions.create(model=MODEL, prompt=["Once upon a time"], max_tokens=8)
    assert again.choices[0].text == done.choices[0].text  # the same draw for the same prompt
    events = list(client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(e.choices[0].text for e in events if e.choices) == done.choices[0].text
    assert events[-1].usage.completion_tokens == done.usage.completion_tokens
    for bad in ({"prompt": ["a", "b"]}, {"prompt": "x" * 20000}, {}):
        response = httpx.post(f"{base_url}/v1/completions", json=bad)
        assert response.status_code == 400 and response.json()["object"] == "error"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-9", prompt="x")


def test_embeddings_are_deterministic_unit_vectors_in_either_encoding(base_url, client):
    from mercato.engine.embeddings import DIMENSIONS, embed
    from mercato.engine.tokenizer import token_ids

    default = client.embeddings.create(model=MODEL, input=["the green boat", "a red car"])  # base64
    floats = client.embeddings.create(model=MODEL, input="the green boat", encoding_format="float")
    assert len(default.data) == 2 and len(floats.data[0].embedding) == DIMENSIONS
    assert floats.data[0].embedding == pytest.approx(default.data[0].embedding, abs=1e-6)
    assert floats.data[0].embedding == pytest.approx(embed(token_ids("the green boat")).tolist(), abs=1e-6)
    assert sum(v * v for v in floats.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    assert default.usage.prompt_tokens == len(token_ids("the green boat")) + len(token_ids("a red car"))
    ids = client.embeddings.create(model=MODEL, input=[5, 6, 7], encoding_format="float")
    assert ids.usage.prompt_tokens == 3 and ids.data[0].embedding == pytest.approx(embed([5, 6, 7]).tolist())
    for bad in ({"input": ""}, {"input": [-1]}, {"input": "x" * 20000}, {"input": 3}):
        assert httpx.post(f"{base_url}/v1/embeddings", json=bad).status_code == 400
