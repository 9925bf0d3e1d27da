"""Property-based fuzzing of the gateway's published API, and hostile clients by hand.

schemathesis reads ``/openapi.json`` from a live gateway (simulated engines behind it) and sends
every operation schema-valid and schema-invalid requests, with all its checks: no 5xx, every
response conforms to its documented schema and content type, every status code is documented,
invalid data is rejected, valid data accepted. Generation is derandomized and bounded, so the
run is the same every time and takes seconds. Then what a schema cannot express: a 10 MB body,
invalid UTF-8, deeply nested JSON, a body sent slowly, a prompt longer than any context.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from gateway_live_support import config_for, engines, gateway

CLUSTER = {"small-1": "qwen3-4b", "medium": "qwen3-8b"}
ROUTED = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MAX_EXAMPLES = 20  # per operation and mode: both modes take about 10 s on 2 cores
FUZZ = SchemathesisConfig.from_dict({
    "checks": {
        # 422 is the answer to valid data with a deadline no backend can meet (deadline_infeasible);
        # the default list also takes 5xx, which valid data must never get here
        "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]},
    },
})


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzz") / "ledger.sqlite"
    with engines(speed=0, cluster=CLUSTER) as urls:
        config = config_for(urls, db, CLUSTER, server={"max_body_bytes": 64 * 1024})
        with gateway(config) as (url, _):
            yield url


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(f"{live}/openapi.json", config=FUZZ)


def operations(api_schema) -> list:
    return [result.ok() for result in api_schema.get_all_operations()]


def test_the_schema_publishes_every_endpoint_with_its_models(api_schema):
    labels = {op.label for op in operations(api_schema)}
    assert {f"POST {path}" for path in ROUTED} | {"GET /v1/models", "GET /v1/models/{model_id}"} <= labels
    raw = api_schema.raw_schema
    chat = raw["paths"]["/v1/chat/completions"]["post"]
    request = chat["requestBody"]["content"]["application/json"]["schema"]
    assert request["$ref"].endswith("ChatCompletionRequest")
    assert {"200", "400", "404", "422", "429", "503"} <= set(chat["responses"])
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    extension = raw["components"]["schemas"]["MercatoExtension"]["properties"]
    assert {"bid", "delta", "deadline_ms"} <= set(extension)
    assert extension["delta"]["anyOf"][0]["maximum"] == 1


def served(case):
    """A schema-valid body asks for the auction's model, so that it reaches the engines (any
    other name is a 404, which the generated names would nearly always be), and for a reply
    that fits the engines' context: a longer one is a 400 from the backend, as from vLLM or
    OpenAI, which no schema can express (the hand-written tests below cover it)."""
    body = case.body
    if case.meta.generation.mode.is_positive and isinstance(body, dict) and "model" in body:
        body["model"] = "mercato"
        for cap in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(cap), int | float):
                body[cap] = min(body[cap], 64)
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_under_all_checks(api_schema, mode):
    """schemathesis's own pytest plugin needs pytest < 9 for fixture-loaded schemas: hypothesis
    drives each operation's strategy directly, with the same checks."""
    fuzzed = set()
    for operation in operations(api_schema):

        @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        @given(case=operation.as_strategy(generation_mode=mode).map(served))
        def fuzz(case) -> None:
            case.call_and_validate()

        try:
            fuzz()
        except Unsatisfiable:  # nothing schema-invalid to send: no body, only free-form strings
            assert mode is GenerationMode.NEGATIVE
            continue
        fuzzed.add(operation.label)
    assert {f"POST {path}" for path in ROUTED} <= fuzzed


def assert_openai_4xx(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def json_body(path: str, text: str) -> dict:
    if path.endswith("chat/completions"):
        return {"model": "mercato", "messages": [{"role": "user", "content": text}], "max_tokens": 4}
    return {"model": "mercato", "max_tokens": 4, "prompt": text} if path.endswith("/completions") else {
        "model": "mercato", "input": text}


@pytest.mark.parametrize("path", ROUTED)
def test_hostile_bodies_are_openai_4xx(live, path):
    url = f"{live}{path}"
    ten_mb = json.dumps(json_body(path, "x" * 10_000_000)).encode()
    assert_openai_4xx(httpx.post(url, content=ten_mb), 413)
    pieces = iter([ten_mb[i:i + 65536] for i in range(0, len(ten_mb), 65536)])
    assert_openai_4xx(httpx.post(url, content=pieces), 413)  # chunked: no content-length to refuse it by
    invalid_utf8 = json.dumps(json_body(path, "UTF8")).encode().replace(b"UTF8", b"\xff\xfe\xc3")
    assert assert_openai_4xx(httpx.post(url, content=invalid_utf8), 400)["code"] == "invalid_json"
    deep = b"[" * 20_000 + b"]" * 20_000  # under the body limit, far over any parser's depth
    assert assert_openai_4xx(httpx.post(url, content=deep), 400)["code"] == "invalid_json"
    nested = json.dumps(json_body(path, "hi") | {"metadata": "X"}).encode().replace(
        b'"X"', b'{"a":' * 2000 + b"1" + b"}" * 2000)
    assert assert_openai_4xx(httpx.post(url, content=nested), 400)["code"] == "invalid_json"
    # a prompt longer than the engines' context: the backend's 400, passed back in OpenAI's shape
    long = json.dumps(json_body(path, "word " * 6000)).encode()
    assert "context" in assert_openai_4xx(httpx.post(url, content=long), 400)["message"]


def test_a_slow_body_is_served_and_a_stalled_one_does_not_hurt_others(live):
    host, port = live.removeprefix("http://").split(":")
    body = json.dumps(json_body("/v1/chat/completions", "Where did the green boat go?")).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as slow, \
            socket.create_connection((host, int(port)), timeout=30) as stalled:
        stalled.sendall(head + body[:10])  # and never the rest
        slow.sendall(head)
        for i in range(0, len(body), 8):
            slow.sendall(body[i:i + 8])
            time.sleep(0.01)
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        ok = httpx.post(f"{live}/v1/chat/completions", json=json_body("/v1/chat/completions", "hi"))
        assert ok.status_code == 200  # the stalled client holds no one up
    assert httpx.get(f"{live}/health").status_code == 200
