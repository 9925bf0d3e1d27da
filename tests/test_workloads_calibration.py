"""The calibration workload and the simulator side of the real-vs-simulated comparison (no server)."""

import itertools

import pytest

from mercato.engine import EngineCore
from mercato.engine.calibration import (
    REPLAY_DIALOGUES,
    REPLAY_TURNS,
    calibrate_against_real,
    compare,
    replay_simulated,
    smollm2_profile,
)
from mercato.engine.chat import GENERATION_PROMPT, render_chat
from mercato.workloads.engine_calibration import calibration_workload


def test_workload_has_gold_histories_and_byte_prefix_prompts():
    conversations = calibration_workload(seed=0)
    assert len(conversations) == REPLAY_DIALOGUES and {len(c) for c in conversations} == {REPLAY_TURNS}
    for conversation in conversations:
        for (before, gold), (after, _) in itertools.pairwise(conversation):
            assert after[len(before)] == {"role": "assistant", "content": gold}  # gold, not a reply
            assert render_chat(after).startswith(render_chat(before))


def test_profile_from_rates_runs_in_the_engine():
    profile = smollm2_profile(prefill_tokens_per_s=800.0, decode_tokens_per_s=60.0, decode_batch_slowdown=0.4)
    assert profile.name == "smollm2-135m-cpu" and profile.decode_step_seconds(1) == pytest.approx(1 / 60)
    assert profile.decode_step_seconds(3) == pytest.approx(1.8 / 60)
    core = EngineCore(profile)  # default gpu_memory_utilization 0.6 leaves room for 4 x 4096 tokens
    assert core.pool.num_blocks * 16 >= 4 * 4096


def test_simulated_replay_and_comparison():
    conversations = calibration_workload(seed=1)[:2]
    rows = [{"dialogue": d, "turn": t, "sim_prompt": render_chat(messages) + GENERATION_PROMPT,
             "real_correct": None}
            for d, conversation in enumerate(conversations)
            for t, (messages, _) in enumerate(conversation, 1)]
    profile = smollm2_profile(prefill_tokens_per_s=1000.0, decode_tokens_per_s=50.0,
                              decode_batch_slowdown=0.5)
    replay_simulated(profile, rows)
    first, second = rows[0], rows[1]
    # turn 1 is cold, turn 2 re-uses every full block of turn 1's prompt (one request at a time)
    assert first["sim_cached_tokens"] == 0
    assert second["sim_cached_tokens"] == first["sim_prompt_tokens"] // 16 * 16
    # TTFT = uncached prefill at the profile's rate, at least one decode step
    prefill_ms = 1e3 * first["sim_prompt_tokens"] / 1000.0
    assert first["sim_ttft_ms"] == pytest.approx(max(prefill_ms, 20.0), rel=0.01)
    # a "real" engine that matches the simulator exactly: no error at all
    for row in rows:
        row.update(real_ttft_ms=row["sim_ttft_ms"], real_prompt_tokens=row["sim_prompt_tokens"],
                   real_cached_tokens=row["sim_cached_tokens"])
    exact = compare(rows)
    assert exact["median_relative_ttft_error"] == 0 and exact["cached_within_one_block"] == 1.0
    assert [p["turn"] for p in exact["per_turn"]] == list(range(1, REPLAY_TURNS + 1))
    # one that is twice as slow and caches 40 tokens more on every request
    for row in rows:
        row.update(real_ttft_ms=2 * row["sim_ttft_ms"], real_cached_tokens=row["sim_cached_tokens"] + 40)
    off = compare(rows)
    assert off["median_relative_ttft_error"] == pytest.approx(0.5)
    assert off["cached_within_one_block"] == 0.0
    assert off["median_abs_cached_error_tokens"] == pytest.approx(40)


def test_calibration_is_skipped_without_the_server(monkeypatch, tmp_path):
    monkeypatch.setenv("MERCATO_LLAMA_SERVER", str(tmp_path / "missing-llama-server"))
    report = calibrate_against_real(calibration_workload(seed=0), out_dir=tmp_path)
    assert "not built" in report["skipped"] and not list(tmp_path.iterdir())
