"""A backend killed mid-run: its requests fail over, none is lost, none is billed twice."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai

from gateway_live_support import config_for, engines, gateway, ledger_rows
from mercato.gateway.live.backends import CircuitState
from mercato.gateway.live.config import parse_config
from mercato.gateway.live.fleet import EngineFleet
from mercato.workloads import dialogue_messages, synthetic_dialogues

SURVIVORS = {"medium": "qwen3-8b", "large": "qwen3-32b"}
QUESTIONS = [dialogue_messages(d, 1, []) for d in synthetic_dialogues("quac", n=40, seed=3, turns=1)]


def test_killed_backend_fails_over_without_losing_or_duplicating_requests(tmp_path):
    db = tmp_path / "ledger.sqlite"
    with engines(speed=5.0, cluster=SURVIVORS) as urls, EngineFleet(["qwen3-4b"], speed=1.0) as fleet:
        base = config_for(urls, db, SURVIVORS).model_dump(mode="json")
        (victim,) = fleet.backend_configs()  # its own process, so that it can be killed
        base["backends"].append(victim.model_dump(mode="json") | {"name": "victim"})
        config = parse_config(base | {
            "policy": {"name": "round_robin"},
            "retries": {"max_retries": 1, "backoff_base_s": 0.01},
            "circuit_breaker": {"failure_threshold": 2, "cooldown_s": 600, "health_interval_s": 0.5}})
        with gateway(config) as (url, gw):
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)

            def ask(messages: list[dict]) -> tuple[str, dict, str]:
                raw = client.chat.completions.with_raw_response.create(
                    model="mercato", messages=messages, max_tokens=48,
                    extra_body={"mercato": {"domain": "quac"}})
                reply = raw.parse()
                return raw.headers["x-mercato-request-id"], reply.mercato, reply.choices[0].message.content

            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(ask, m) for m in QUESTIONS]
                deadline = time.monotonic() + 30
                while gw.pool["victim"].in_flight == 0:  # kill it while it is serving
                    assert time.monotonic() < deadline, "the victim never received a request"
                    time.sleep(0.002)
                fleet.kill(victim.name)
                results = [f.result() for f in futures]  # raises if any request was lost

            assert gw.pool["victim"].breaker.state is CircuitState.OPEN
            assert not gw.router.snapshot()["backends"]["victim"]["healthy"]
            moved = [billing for _, billing, _ in results if billing["failovers"] > 0]
            assert moved and all(b["backend"] != "victim" for b in moved)
            assert all(text for _, _, text in results)

            # after the kill, streaming clients are served by the survivors too
            for messages in QUESTIONS[:3]:
                stream = client.chat.completions.create(model="mercato", messages=messages, max_tokens=16,
                                                        stream=True)
                assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            ready = httpx.get(f"{url}/ready").json()
            assert ready["ready"] and "victim" not in ready["healthy_backends"]
            metrics = httpx.get(f"{url}/metrics").text
            assert 'mercato_backend_circuit_state{backend="victim"} 2.0' in metrics
            assert "mercato_failovers_total" in metrics
            assert gw.router.snapshot()["pending"] == 0

    rows = ledger_rows(db)
    ids = [rid for rid, _, _ in results]
    assert len({r["request_id"] for r in rows}) == len(rows) == len(ids) + 3
    assert set(ids) <= {r["request_id"] for r in rows}
    by_id = {r["request_id"]: r for r in rows}
    for rid, billing, _ in results:
        assert by_id[rid]["backend"] == billing["backend"]
        assert by_id[rid]["payment"] >= by_id[rid]["cost"] - 1e-12
