"""The real engine tier: llama.cpp's llama-server with SmolLM2-135M, started on 127.0.0.1 by the test.

`make test` builds the server first (`mercato engine real build --if-possible`, once per machine);
these tests skip, saying why, only when it is not built (no cmake or compiler, or not built yet).
"""

import asyncio
import itertools

import httpx
import pytest
from typer.testing import CliRunner

from mercato.cli import app as cli
from mercato.engine.calibration import compare, measured_profile, replay_real, replay_simulated
from mercato.engine.real import MODEL_NAME, RealEngine, build_problems, model_path, server_binary
from mercato.workloads import synthetic_dialogues
from mercato.workloads.dialogue import gold_history_turns
from mercato.workloads.loadgen import run_load


def _skip_reason() -> str | None:
    if server_binary() is None:
        problems = build_problems()
        return ("llama-server cannot be built here: " + "; ".join(problems) if problems
                else "llama-server is not built: run `mercato engine real build`")
    try:
        model_path()
    except FileNotFoundError as err:
        return str(err)
    return None


SKIP_REASON = _skip_reason()
needs_server = pytest.mark.skipif(SKIP_REASON is not None, reason=str(SKIP_REASON))


@pytest.fixture(scope="module")
def engine():
    with RealEngine.start(slots=2) as running:
        yield running


@pytest.mark.real_engine
@needs_server
def test_cached_tokens_grow_across_the_turns_of_a_dialogue(engine):
    dialogue = synthetic_dialogues("coqa", n=1, seed=0, turns=4)
    records = asyncio.run(run_load(engine.url, dialogue, max_tokens=24, concurrency=1))
    assert [r.turn for r in records] == [1, 2, 3, 4] and all(r.error is None for r in records)
    assert all(r.model == MODEL_NAME and r.answer for r in records)
    assert records[0].cached_tokens < 16  # a cold slot: (almost) nothing cached
    for before, after in itertools.pairwise(records):
        assert after.prompt_tokens > before.prompt_tokens
        assert after.cached_tokens > before.cached_tokens
        # the whole previous prompt is reused (the reply that followed it too, up to re-tokenisation)
        assert after.cached_tokens >= before.prompt_tokens


@pytest.mark.real_engine
@needs_server
def test_simulator_replay_agrees_on_cached_tokens_within_one_block(engine):
    conversations = [gold_history_turns(d) for d in synthetic_dialogues("coqa", n=2, seed=3, turns=3)]
    rows = replay_real(engine.url, conversations)
    assert [(r["dialogue"], r["turn"]) for r in rows] == [(d, t) for d in range(2) for t in (1, 2, 3)]
    replay_simulated(measured_profile(), rows)
    compare(rows)
    # later turns extend the previous prompt: both engines hit it, counts agree within one block.
    # (A first turn only shares the instruction with whatever its slot held before, which depends on
    # llama.cpp's slot choice; the bench reports those too.)
    later = [r for r in rows if r["turn"] > 1]
    assert all(abs(r["cached_error_tokens"]) <= 16 for r in later), [r["cached_error_tokens"] for r in rows]
    assert all(r["sim_cached_tokens"] > 0.8 * r["sim_prompt_tokens"] for r in later)


@pytest.mark.real_engine
@needs_server
def test_server_health_models_and_a_clean_stop():
    with RealEngine.start(slots=1) as running:
        assert httpx.get(f"{running.url}/health").status_code == 200
        models = httpx.get(f"{running.url}/v1/models").json()
        assert MODEL_NAME in {m["id"] for m in models["data"]}
    assert running.process.poll() is not None


def test_build_command_reports_missing_tools_and_start_needs_a_binary(monkeypatch, tmp_path):
    monkeypatch.setenv("MERCATO_CACHE", str(tmp_path))  # an empty cache: nothing built there
    monkeypatch.delenv("MERCATO_LLAMA_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no cmake, no compiler
    assert server_binary() is None
    assert any("cmake" in p for p in build_problems()) and any("C++" in p for p in build_problems())
    skipped = CliRunner().invoke(cli, ["engine", "real", "build", "--if-possible"])
    assert skipped.exit_code == 0 and "cannot build llama.cpp" in skipped.output
    failed = CliRunner().invoke(cli, ["engine", "real", "build"])
    assert failed.exit_code != 0 and "no cmake on PATH" in failed.output
    with pytest.raises(FileNotFoundError, match="mercato engine real build"):
        RealEngine.start()
