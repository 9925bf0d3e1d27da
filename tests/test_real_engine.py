"""The real engine tier: llama.cpp's llama-server with SmolLM2-135M, started on 127.0.0.1 by the test.

`make test` builds the server first (`mercato engine real build --if-possible`, once per machine);
these tests skip, saying why, only when it is not built (no cmake or compiler, or not built yet).
"""

import asyncio
import itertools

import httpx
import pytest

from mercato.engine.real import MODEL_NAME, RealEngine, build_problems, model_path, server_binary
from mercato.workloads import synthetic_dialogues
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
pytestmark = [pytest.mark.real_engine, pytest.mark.skipif(SKIP_REASON is not None, reason=str(SKIP_REASON))]


@pytest.fixture(scope="module")
def engine():
    with RealEngine.start(slots=2) as running:
        yield running


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


def test_server_health_models_and_a_clean_stop():
    with RealEngine.start(slots=1) as running:
        assert httpx.get(f"{running.url}/health").status_code == 200
        models = httpx.get(f"{running.url}/v1/models").json()
        assert MODEL_NAME in {m["id"] for m in models["data"]}
    assert running.process.poll() is not None
