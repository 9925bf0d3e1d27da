"""The bench's floor proxy: a real answer rebuilt from a real engine's stream; bad bodies refused."""

from __future__ import annotations

import httpx

from mercato.bench.gateway_load import PROFILE, PROMPT
from mercato.bench.passthrough import passthrough_process
from mercato.gateway.live.fleet import EngineFleet


def test_passthrough_rebuilds_the_engines_answer_and_refuses_what_the_gateway_refuses():
    with EngineFleet([PROFILE], speed=0.0) as fleet, \
            passthrough_process(f"{fleet.engines[0].url}/chat/completions") as (url, _):
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                           json={"model": PROFILE, "messages": PROMPT, "max_tokens": 8})
        assert reply.status_code == 200
        body = reply.json()
        assert body["object"] == "chat.completion" and body["model"] == PROFILE
        assert body["choices"][0]["message"]["content"]
        assert body["usage"]["prompt_tokens"] > 0 and 0 < body["usage"]["completion_tokens"] <= 8
        assert body["system_fingerprint"] == fleet.engines[0].name  # the engine's own chunks, merged
        refused = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                             json={"model": PROFILE, "messages": PROMPT, "max_tokens": -1})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "max_tokens"
