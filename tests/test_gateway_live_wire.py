"""OpenAI wire handling: request validation (by the published models), buyer reports, sessions,
chunk merging, breakers."""

from __future__ import annotations

import json

import pytest

from mercato.engine.chat import render_chat
from mercato.gateway.live.backends import CircuitBreaker, CircuitState
from mercato.gateway.live.config import BuyerDefaults
from mercato.gateway.live.errors import APIError
from mercato.gateway.live.openai_api import MercatoExtension
from mercato.gateway.live.wire import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    ChatAccumulator,
    EmbeddingAccumulator,
    TextAccumulator,
    backend_body,
    buyer_report,
    parse_request,
    session_of,
    sse_data,
    tracing,
)

MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hi?"}]


def body(**over) -> bytes:
    return json.dumps({"model": "mercato", "messages": MESSAGES} | over).encode()


def parse_chat_request(raw: bytes):
    return parse_request(CHAT, raw)


def rejected(raw: bytes, kind: str = CHAT) -> APIError:
    with pytest.raises(APIError) as info:
        parse_request(kind, raw)
    assert info.value.status == 400
    return info.value


def test_valid_request_is_parsed():
    chat = parse_chat_request(body(stream=True, stream_options={"include_usage": True}, max_tokens=9,
                                   mercato={"bid": 2, "domain": "coqa", "gold_answer": "blue"}))
    assert chat.stream and chat.include_usage and chat.max_tokens == 9
    assert chat.prompt == render_chat(MESSAGES)
    assert chat.domain == "coqa" and chat.gold_answer == "blue"


@pytest.mark.parametrize(("raw", "param"), [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b"\xff\xfe", None),
    (json.dumps({"messages": MESSAGES}).encode(), "model"),
    (json.dumps({"model": 3, "messages": MESSAGES}).encode(), "model"),
    (json.dumps({"model": "mercato"}).encode(), "messages"),
    (body(messages=[]), "messages"),
    (body(messages="hello"), "messages"),
    (body(messages=[{"role": "wizard", "content": "x"}]), "messages"),
    (body(messages=[{"role": "user", "content": 42}]), "messages"),
    (body(messages=[3]), "messages"),
    (body(stream="yes"), "stream"),
    (body(stream_options=[1]), "stream_options"),
    (body(max_tokens=0), "max_tokens"),
    (body(max_tokens="10"), "max_tokens"),
    (body(max_tokens=True), "max_tokens"),
    (body(max_completion_tokens=-5), "max_completion_tokens"),
    (body(n=2), "n"),
    (body(n=True), "n"),
    (body(max_completion_tokens=5, max_tokens="x"), "max_tokens"),
    (body(stream_options={"include_usage": "yes"}), "stream_options.include_usage"),
    (body(user=7), "user"),
    (body(mercato="rich"), "mercato"),
    (body(mercato={"domain": 5}), "mercato.domain"),
    (body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]), "messages"),
    (body(mercato={"bid": -1}), "mercato.bid"),
    (body(mercato={"bid": "lots"}), "mercato.bid"),
    (body(mercato={"bid": True}), "mercato.bid"),
    (b'{"model": "m", "messages": [{"role": "user"}], "mercato": {"bid": 1e999}}', None),  # orjson: not JSON
    (body(mercato={"bid": 1e300}), "mercato.bid"),  # the auction's values would overflow
    (body(max_tokens=2**63), "max_tokens"),
    (body(mercato={"delta": 1.5}), "mercato.delta"),
    (body(mercato={"deadline_ms": 0}), "mercato.deadline_ms"),
])
def test_bad_requests_are_400_naming_the_parameter(raw, param):
    err = rejected(raw)
    assert err.param == param
    assert set(err.body()["error"]) == {"message", "type", "param", "code"}
    assert err.body()["error"]["type"] == "invalid_request_error"


DEFAULTS = BuyerDefaults(bid=1.0, delta=0.5, deadline_ms=None)


def test_report_body_extension_wins_over_headers_which_win_over_defaults():
    headers = {"x-mercato-bid": "3", "x-mercato-delta": " 0.9", "x-mercato-deadline-ms": "800"}
    report = buyer_report(MercatoExtension(bid=2.5), headers, DEFAULTS)
    assert (report.bid, report.delta, report.deadline_ms) == (2.5, 0.9, 800.0)
    none = MercatoExtension()
    assert buyer_report(none, {}, DEFAULTS) == buyer_report(none, {"x-mercato-bid": " "}, DEFAULTS)
    assert buyer_report(none, {}, DEFAULTS).bid == 1.0


@pytest.mark.parametrize(("headers", "param"), [
    ({"x-mercato-bid": "abc"}, "x-mercato-bid"),
    ({"x-mercato-bid": "-0.5"}, "x-mercato-bid"),
    ({"x-mercato-bid": "nan"}, "x-mercato-bid"),
    ({"x-mercato-bid": "inf"}, "x-mercato-bid"),
    ({"x-mercato-bid": "1e300"}, "x-mercato-bid"),
    ({"x-mercato-delta": "-0.1"}, "x-mercato-delta"),
    ({"x-mercato-deadline-ms": "0"}, "x-mercato-deadline-ms"),
])
def test_bad_report_headers_are_400_under_the_schema_bounds(headers, param):
    with pytest.raises(APIError) as info:
        buyer_report(MercatoExtension(), headers, DEFAULTS)
    assert info.value.status == 400 and info.value.param == param


def test_session_from_dialogue_header_or_from_the_first_messages():
    chat1 = parse_chat_request(body())
    later = [*MESSAGES, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "And?"}]
    chat2 = parse_chat_request(body(messages=later))
    no_trace = tracing({})
    s1, t1 = session_of(chat1, no_trace)
    s2, t2 = session_of(chat2, no_trace)
    assert s1 == s2 and (t1, t2) == (1, 2)
    other = parse_chat_request(body(messages=[MESSAGES[0], {"role": "user", "content": "Bye?"}]))
    assert session_of(other, no_trace)[0] != s1
    trace = tracing({"x-mercato-run-id": "run7", "x-iemas-dialogue-id": "d3", "x-mercato-turn-number": "4",
                     "x-mercato-source": "coqa"})
    assert session_of(chat1, trace) == ("run7/d3", 4) and trace.source == "coqa"
    with pytest.raises(APIError):
        tracing({"x-mercato-turn-number": "zero"})


def test_backend_body_forces_streaming_and_keeps_the_report_private():
    chat = parse_chat_request(body(temperature=0, mercato={"bid": 5, "delta": 0.2, "domain": "coqa"}))
    sent = json.loads(backend_body(chat, "qwen3-8b", forward_extension=True))
    assert sent["model"] == "qwen3-8b" and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True} and sent["temperature"] == 0
    assert sent["mercato"] == {"domain": "coqa"}
    assert "mercato" not in json.loads(backend_body(chat, "m", forward_extension=False))


def test_unknown_openai_fields_reach_the_backend_untouched():
    extra = {"temperature": 0.3, "tools": [{"type": "function", "function": {"name": "f"}}],
             "response_format": {"type": "json_object"}, "seed": 7}
    chat = parse_chat_request(body(**extra, messages=[{"role": "user", "content": "x", "name": "ann"}]))
    sent = json.loads(backend_body(chat, "m", forward_extension=True))
    assert {k: sent[k] for k in extra} == extra and sent["messages"][0]["name"] == "ann"


def test_completions_and_embeddings_requests():
    text = parse_request(COMPLETIONS, json.dumps({"model": "m", "prompt": ["Once upon"], "max_tokens": 3,
                                                  "stream": True}).encode())
    assert (text.prompt, text.max_tokens, text.stream, text.messages) == ("Once upon", 3, True, None)
    assert json.loads(backend_body(text, "b", True))["stream_options"] == {"include_usage": True}
    assert rejected(json.dumps({"model": "m", "prompt": ["a", "b"]}).encode(), COMPLETIONS).param == "prompt"
    assert rejected(json.dumps({"model": "m"}).encode(), COMPLETIONS).code == "missing_required_parameter"
    words = parse_request(EMBEDDINGS, json.dumps({"model": "m", "input": ["a b", "c"]}).encode())
    assert words.prompt == "a b\nc" and words.token_count is None and not words.stream
    assert "stream" not in json.loads(backend_body(words, "b", True))
    ids = parse_request(EMBEDDINGS, json.dumps({"model": "m", "input": [[1, 2], [3]]}).encode())
    assert ids.token_count == 3
    for bad in ({"model": "m", "input": []}, {"model": "m", "input": [-1]}, {"model": "m", "input": 5},
                {"model": "m", "input": "x", "encoding_format": "hex"}):
        assert rejected(json.dumps(bad).encode(), EMBEDDINGS).status == 400
    # a completion's session is its prompt's head: same head, same session
    same = parse_request(COMPLETIONS, json.dumps({"model": "m", "prompt": "Once upon" + "x" * 300}).encode())
    other = parse_request(COMPLETIONS, json.dumps({"model": "m", "prompt": "Once upon" + "x" * 400}).encode())
    assert session_of(same, tracing({})) == session_of(other, tracing({}))


def test_accumulator_rebuilds_a_completion_with_tool_calls_and_usage():
    acc = ChatAccumulator()
    chunks = [
        {"id": "x", "model": "m", "created": 5, "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"choices": [{"index": 0, "delta": {"content": "The "}}]},
        {"choices": [{"index": 0, "delta": {"content": "sky"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "function": {"name": "look", "arguments": "{\"a\":"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]},
                      "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 4,
                                  "prompt_tokens_details": {"cached_tokens": 16}}},
    ]
    content = [acc.add(c) for c in chunks]
    assert content == [False, True, True, False, False, False]
    assert acc.text == "The sky"
    assert acc.usage_counts() == (30, 16, 4)
    out = acc.response("chatcmpl-1", {"prompt_tokens": 30})
    choice = out["choices"][0]
    assert out["object"] == "chat.completion" and out["model"] == "m" and out["created"] == 5
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "look", "arguments": "{\"a\":1}"}


def test_sse_data_keeps_only_complete_data_lines_and_carries_the_rest():
    fields, tail = sse_data(b'data: {"a"', b': 1}\n\n: keep-alive\nevent: x\ndata:[DONE]\ndata: {"b')
    assert fields == [b'{"a": 1}', b"[DONE]"]
    assert tail == b'data: {"b'
    fields, tail = sse_data(tail, b'": 2}\r\n')
    assert fields == [b'{"b": 2}'] and tail == b""
    assert sse_data(b"", b"data: partial") == ([], b"data: partial")


def test_circuit_breaker_opens_probes_and_closes():
    now = [0.0]
    cb = CircuitBreaker(failure_threshold=3, cooldown_s=5.0, clock=lambda: now[0])
    assert not cb.failure() and not cb.failure()
    assert cb.success() is False  # a success resets the count without a state change
    assert not cb.failure() and not cb.failure()
    assert cb.failure() is True and cb.state is CircuitState.OPEN and not cb.allows_requests
    now[0] = 4.9
    assert not cb.probe_due()
    now[0] = 5.0
    assert cb.probe_due() and cb.state is CircuitState.HALF_OPEN and not cb.allows_requests
    assert cb.failure() is True and cb.state is CircuitState.OPEN  # failed probe re-opens at once
    now[0] = 10.0
    assert cb.probe_due()
    assert cb.success() is True and cb.state is CircuitState.CLOSED and cb.allows_requests


def test_text_and_embedding_accumulators():
    text = TextAccumulator()
    chunks = [{"id": "c", "model": "m", "created": 3, "choices": [{"index": 0, "text": ""}]},
              {"choices": [{"index": 0, "text": "Once"}]},
              {"choices": [{"index": 0, "text": " more", "finish_reason": "length"}]},
              {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}]
    assert [text.add(c) for c in chunks] == [False, True, False, False] or text.text == "Once more"
    assert text.text == "Once more" and text.usage_counts() == (5, 0, 2)
    out = text.response("cmpl-1", {"prompt_tokens": 5})
    assert out["object"] == "text_completion" and out["choices"][0] == {
        "index": 0, "text": "Once more", "logprobs": None, "finish_reason": "length"}
    emb = EmbeddingAccumulator()
    assert emb.usage_counts() is None
    assert emb.add({"object": "list", "data": [{"index": 0}], "model": "e", "usage": {"prompt_tokens": 4}})
    assert emb.usage_counts() == (4, 0, 0) and emb.text == ""
    assert emb.response("x", {"prompt_tokens": 4})["data"] == [{"index": 0}]
