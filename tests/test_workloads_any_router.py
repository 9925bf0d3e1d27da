"""Scoring and pricing that work through any router: metadata in, system_fingerprint out."""

from __future__ import annotations

import asyncio
import json

from mercato.engine import EngineCore, get_profile
from mercato.engine.protocol import parse_chat_request
from mercato.engine.server import create_app, running_server
from mercato.workloads import synthetic_dialogues
from mercato.workloads.loadgen import run_load, summarize


def test_the_engine_reads_domain_and_gold_answer_from_standard_metadata():
    body = {"messages": [{"role": "user", "content": "q"}],
            "metadata": {"mercato_domain": "quac", "mercato_gold_answer": "the red barn"}}
    request = parse_chat_request(json.dumps(body).encode())
    assert (request.domain, request.gold_answer) == ("quac", "the red barn")
    own = parse_chat_request(json.dumps({**body, "mercato": {"domain": "coqa", "gold_answer": "x"}}).encode())
    assert (own.domain, own.gold_answer) == ("coqa", "x")  # mercato's own extension wins
    bare = parse_chat_request(json.dumps({"messages": body["messages"]}).encode())
    assert (bare.domain, bare.gold_answer) == ("default", None)


def _accuracy(strip_extension: bool) -> tuple[float, set[str | None]]:
    """Accuracy of one engine behind a 'router' that drops (or keeps) the mercato body field."""
    core = EngineCore(get_profile("qwen3-8b"), max_num_seqs=4, seed=0)
    engine = create_app(core, "qwen3-8b", speed=50.0, instance="engine-7")

    async def router(scope, receive, send):  # re-encodes the body without unknown fields, as sglang-router
        if scope["type"] != "http" or not strip_extension or not scope["path"].endswith("/chat/completions"):
            return await engine(scope, receive, send)
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw)
        body.pop("mercato", None)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        await engine({**scope, "headers": headers}, replay, send)

    with running_server(router) as url:
        records = asyncio.run(run_load(url, synthetic_dialogues("coqa", n=6, seed=1, turns=4),
                                       concurrency=3, max_tokens=32, seed=1))
    return summarize(records)["accuracy"], {r.served_by for r in records}


def test_answers_score_alike_when_a_router_drops_the_mercato_field():
    kept, served = _accuracy(strip_extension=False)
    dropped, served_dropped = _accuracy(strip_extension=True)
    assert served == served_dropped == {"engine-7"}  # every response names its engine
    assert kept > 0.3 and dropped == kept
