"""The load generator against a live simulated engine on 127.0.0.1, and its CLI."""

import asyncio
import itertools
import json

import pytest
from fastapi import Request
from typer.testing import CliRunner

from mercato.cli import app as cli
from mercato.engine import EngineCore, get_profile
from mercato.engine.server import create_app, running_server
from mercato.workloads import synthetic_dialogues
from mercato.workloads.loadgen import poisson_offsets, run_load, summarize, v1_url


@pytest.fixture
def engine_server():
    """A simulated qwen3-8b engine that also records each request's headers and body."""
    core = EngineCore(get_profile("qwen3-8b"), max_num_seqs=4, seed=0)
    app = create_app(core, "qwen3-8b", speed=20.0)
    seen = []

    @app.middleware("http")
    async def record(request: Request, call_next):
        if request.url.path.endswith("/chat/completions"):
            seen.append((dict(request.headers), json.loads(await request.body())))
        return await call_next(request)

    with running_server(app) as url:
        yield url, seen


def test_run_load_replays_dialogues_with_tracing_and_growing_cache(engine_server):
    url, seen = engine_server
    dialogues = synthetic_dialogues("coqa", n=3, seed=7, turns=3)
    got = []
    records = asyncio.run(run_load(url, dialogues, concurrency=2, max_tokens=32, run_id="run-1",
                                   mercato={"bid": 2.0}, on_record=got.append))
    assert len(records) == 9 and got == records
    assert all(r.error is None and r.model == "qwen3-8b" for r in records)
    by_dialogue = {}
    for r in records:
        by_dialogue.setdefault(r.dialogue_id, []).append(r)
    for dialogue in dialogues:
        turns = by_dialogue[dialogue.dialogue_id]
        assert [r.turn for r in turns] == [1, 2, 3]  # sequential within a dialogue
        assert [r.gold for r in turns] == [t.answer for t in dialogue.turns]
        # turn t+1 extends turn t verbatim, so the engine's prefix cache covers turn t's prompt
        for before, after in itertools.pairwise(turns):
            assert after.cached_tokens >= before.prompt_tokens - 16
            assert after.prompt_tokens > before.prompt_tokens
    for r in records:
        assert r.ttft_ms is not None and 0 < r.ttft_ms <= r.latency_ms
        assert r.correct == (r.rouge_l >= 0.3)
    headers, body = seen[0]
    assert headers["x-mercato-run-id"] == "run-1"
    assert headers["x-mercato-source"] == "synthetic"
    assert {(h["x-mercato-dialogue-id"], int(h["x-mercato-turn-number"])) for h, _ in seen} == {
        (r.dialogue_id, r.turn) for r in records}
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["mercato"]["domain"] == "coqa" and body["mercato"]["bid"] == 2.0
    assert body["mercato"]["gold_answer"] in {t.answer for d in dialogues for t in d.turns}
    assert body["model"] == "qwen3-8b"  # taken from GET /v1/models

    summary = summarize(records)
    assert summary["requests"] == 9 and summary["errors"] == 0 and summary["dialogues"] == 3
    assert summary["kv_hit_rate"] == pytest.approx(
        sum(r.cached_tokens / r.prompt_tokens for r in records) / 9)
    assert summary["accuracy"] == pytest.approx(sum(r.correct for r in records) / 9)
    assert summary["ttft_p50_ms"] <= summary["ttft_p95_ms"]


def test_gold_history_puts_the_gold_answers_in_the_prompt(engine_server):
    url, seen = engine_server
    [dialogue] = synthetic_dialogues("coqa", n=1, seed=2, turns=3)
    records = asyncio.run(run_load(url, [dialogue], history="gold"))
    assert len(records) == 3
    third = seen[-1][1]["messages"]
    assert [m["content"] for m in third if m["role"] == "assistant"] == [t.answer for t in dialogue.turns[:2]]
    with pytest.raises(ValueError, match="history must be one of model, gold"):
        asyncio.run(run_load(url, [dialogue], history="mine"))


def test_errors_are_recorded_and_end_the_dialogue():
    dialogues = synthetic_dialogues("quac", n=2, seed=1, turns=3)
    # nothing listens on port 9 (discard) of 127.0.0.1: every first turn fails, no second turn is sent
    records = asyncio.run(run_load("http://127.0.0.1:9", dialogues, model="m", timeout_s=5.0))
    assert len(records) == 2 and all(r.turn == 1 and r.error for r in records)
    assert all(r.correct is None and r.cached_tokens is None for r in records)
    summary = summarize(records)
    assert summary["errors"] == 2 and summary["ttft_p50_ms"] is None and summary["accuracy"] is None


def test_poisson_offsets_and_url_checks():
    offsets = poisson_offsets(2000, rate=4.0, seed=3)
    assert offsets == sorted(offsets) and offsets == poisson_offsets(2000, rate=4.0, seed=3)
    gaps = [b - a for a, b in zip([0.0, *offsets], offsets, strict=False)]
    assert sum(gaps) / len(gaps) == pytest.approx(0.25, rel=0.1)  # mean gap 1 / rate
    assert poisson_offsets(3, None, 0) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="rate must be positive"):
        poisson_offsets(3, 0.0, 0)
    assert v1_url("http://h:1/") == "http://h:1/v1" and v1_url("http://h:1/v1") == "http://h:1/v1"
    with pytest.raises(ValueError, match="must start with http"):
        v1_url("h:1")
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        asyncio.run(run_load("http://127.0.0.1:9", [], concurrency=0))


def test_loadgen_command_writes_jsonl_and_prints_one_json_summary(engine_server, tmp_path):
    url, _ = engine_server
    out = tmp_path / "records.jsonl"
    result = CliRunner().invoke(cli, ["loadgen", "--url", url, "--workload", "hotpotqa-sample",
                                      "--dialogues", "3", "--concurrency", "3", "--poisson-rate", "50",
                                      "--out", str(out), "--run-id", "cli-run", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["requests"] == 3 and summary["errors"] == 0 and summary["run_id"] == "cli-run"
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3 and {line["domain"] for line in lines} == {"hotpotqa"}
    assert set(lines[0]) >= {"run_id", "dialogue_id", "turn", "ttft_ms", "latency_ms", "prompt_tokens",
                             "cached_tokens", "completion_tokens", "answer", "gold", "rouge_l", "correct",
                             "error"}
    bad = CliRunner().invoke(cli, ["loadgen", "--url", url, "--workload", "nope", "--out", str(out)])
    assert bad.exit_code != 0 and "unknown workload" in bad.output
