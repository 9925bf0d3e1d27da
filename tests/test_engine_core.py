"""The in-process engine: prefix reuse, LRU eviction, queueing, the time model, answers, determinism."""

from __future__ import annotations

import math

import pytest

from mercato.engine import EngineCore, EngineRequest, EngineResult, get_profile
from mercato.engine.answers import draw_reply
from mercato.engine.chat import END, GENERATION_PROMPT, render_chat
from mercato.engine.kv_cache import BLOCK_CHARS, BLOCK_TOKENS
from mercato.engine.tokenizer import count_tokens

SYSTEM = {"role": "system",
          "content": "Read the passage and answer briefly.\n" + "The old boat sailed. " * 60}


def drain(core: EngineCore) -> list[EngineResult]:
    """Advance event by event until the engine is idle."""
    done: list[EngineResult] = []
    while (t := core.next_event_time()) != math.inf:
        done.extend(core.advance(t))
    return done


def ask(core: EngineCore, request_id: str, messages: list[dict], now: float | None = None,
        **kwargs) -> EngineResult:
    """Submit one request at ``now`` (default: the engine clock) and run the engine until idle."""
    at = core.clock if now is None else now
    core.submit(EngineRequest(request_id, render_chat(messages), **kwargs), at)
    (result,) = [r for r in drain(core) if r.request_id == request_id]
    return result


def passage(tag: str, words: int) -> list[dict]:
    return [{"role": "system", "content": f"{tag}: " + " ".join(f"w{tag}{i}" for i in range(words))},
            {"role": "user", "content": "What happened?"}]


def test_turn_two_reuses_turn_one_blocks():
    core = EngineCore(get_profile("qwen3-8b"))
    turn1 = [SYSTEM, {"role": "user", "content": "Who sailed?"}]
    first = ask(core, "t1", turn1, domain="coqa", gold_answer="the old boat")
    assert first.cached_tokens == 0
    turn2 = [*turn1, {"role": "assistant", "content": first.text}, {"role": "user", "content": "When?"}]
    second = ask(core, "t2", turn2, domain="coqa", gold_answer="yesterday")
    # every full block of turn 1's prompt and generated reply is served from the cache
    sequence1 = render_chat(turn1) + GENERATION_PROMPT + first.text + END
    assert render_chat(turn2).startswith(sequence1)
    assert second.cached_tokens == BLOCK_TOKENS * (len(sequence1) // BLOCK_CHARS)
    assert second.cached_tokens > first.prompt_tokens - BLOCK_TOKENS
    assert second.ttft < first.ttft


def test_cached_tokens_are_whole_blocks_and_never_the_whole_prompt():
    core = EngineCore(get_profile("qwen3-4b"))
    # a prompt whose tokens fill whole blocks exactly: the last block must be recomputed
    overhead = len(render_chat([{"role": "user", "content": ""}]) + GENERATION_PROMPT)
    content = "x" * (10 * BLOCK_CHARS - overhead)
    messages = [{"role": "user", "content": content}]
    assert count_tokens(render_chat(messages) + GENERATION_PROMPT) == 10 * BLOCK_TOKENS
    ask(core, "a", messages)
    again = ask(core, "b", messages)
    assert again.prompt_tokens == 10 * BLOCK_TOKENS
    assert again.cached_tokens == 9 * BLOCK_TOKENS
    odd = [{"role": "user", "content": content + "yy"}]
    third = ask(core, "c", odd)
    assert third.cached_tokens % BLOCK_TOKENS == 0 and third.cached_tokens < third.prompt_tokens


def test_lru_evicts_an_old_dialogue_under_memory_pressure():
    # 64 blocks = 1,024 tokens: room for about three 300-token dialogues
    core = EngineCore(get_profile("qwen3-8b"), num_gpu_blocks=64, max_model_len=1024)
    old = passage("A", 220)
    ask(core, "A1", old, max_tokens=8)
    for tag in "BCDE":
        ask(core, f"{tag}1", passage(tag, 220), max_tokens=8)
    evicted = ask(core, "A2", old, max_tokens=8)
    recent = ask(core, "E2", passage("E", 220), max_tokens=8)
    assert recent.cached_tokens >= recent.prompt_tokens - 2 * BLOCK_TOKENS
    assert evicted.cached_tokens < recent.cached_tokens
    assert evicted.cached_tokens == 0

    roomy = EngineCore(get_profile("qwen3-8b"))
    ask(roomy, "A1", old, max_tokens=8)
    for tag in "BCDE":
        ask(roomy, f"{tag}1", passage(tag, 220), max_tokens=8)
    assert ask(roomy, "A2", old, max_tokens=8).cached_tokens == recent.cached_tokens


def test_thirteenth_request_waits_for_a_slot_and_its_ttft_includes_the_wait():
    core = EngineCore(get_profile("qwen3-8b"), max_num_seqs=12)
    for i in range(13):
        core.submit(EngineRequest(f"r{i}", render_chat(passage(str(i), 200)), max_tokens=32), 0.0)
    assert core.num_running == 12 and core.num_waiting == 1
    results = {r.request_id: r for r in drain(core)}
    last = results["r12"]
    first_finish = min(r.finish_time for rid, r in results.items() if rid != "r12")
    assert last.scheduled_time == pytest.approx(first_finish)
    assert all(r.scheduled_time == 0.0 for rid, r in results.items() if rid != "r12")
    assert last.ttft > first_finish
    assert last.ttft == pytest.approx(last.scheduled_time + (last.first_token_time - last.scheduled_time))
    assert core.num_running == 0 and core.num_waiting == 0 and core.kv_usage == 0.0


def test_ttft_rises_with_uncached_tokens():
    ttfts = []
    for words in (100, 400, 1600):
        core = EngineCore(get_profile("qwen3-32b"))
        ttfts.append(ask(core, "r", passage("p", words), max_tokens=4).ttft)
    assert ttfts[0] < ttfts[1] < ttfts[2]
    profile = get_profile("qwen3-32b")
    assert ttfts[2] - ttfts[1] == pytest.approx(
        (count_tokens(render_chat(passage("p", 1600))) - count_tokens(render_chat(passage("p", 400))))
        / profile.prefill_tokens_per_s, rel=0.01)


def test_decode_is_slower_with_a_bigger_batch():
    def per_token(result: EngineResult) -> float:
        return (result.finish_time - result.first_token_time) / (result.completion_tokens - 1)

    alone = ask(EngineCore(get_profile("qwen3-8b")), "solo", passage("s", 100), domain="hotpotqa")
    core = EngineCore(get_profile("qwen3-8b"))
    for i in range(12):
        core.submit(EngineRequest(f"b{i}", render_chat(passage(f"s{i}", 100)), domain="hotpotqa"), 0.0)
    batch = drain(core)
    assert per_token(alone) == pytest.approx(get_profile("qwen3-8b").decode_step_seconds(1))
    assert min(per_token(r) for r in batch) > per_token(alone)
    longest = max(batch, key=lambda r: r.completion_tokens)
    assert per_token(longest) < get_profile("qwen3-8b").decode_step_seconds(12)


def workload(core: EngineCore, order: list[int]) -> dict[str, EngineResult]:
    for i in order:
        core.submit(EngineRequest(f"q{i}", render_chat(passage(str(i), 80)), domain="coqa",
                                  gold_answer=f"gold answer {i}"), 0.0)
    return {r.request_id: r for r in drain(core)}


def test_results_are_deterministic_by_seed_and_independent_of_arrival_order():
    profile = get_profile("qwen3-4b")
    forward = workload(EngineCore(profile, seed=7), list(range(30)))
    assert forward == workload(EngineCore(profile, seed=7), list(range(30)))
    backward = workload(EngineCore(profile, seed=7), list(range(29, -1, -1)))
    assert {k: (r.text, r.correct, r.completion_tokens) for k, r in forward.items()} == {
        k: (r.text, r.correct, r.completion_tokens) for k, r in backward.items()}
    other = workload(EngineCore(profile, seed=8), list(range(30)))
    assert [r.text for r in other.values()] != [forward[k].text for k in other]


def test_answers_are_correct_with_the_profile_probability():
    profile = get_profile("qwen3-8b")
    core = EngineCore(profile, seed=3)
    n = 3000
    for i in range(n):
        core.submit(EngineRequest(f"g{i}", render_chat(passage(str(i % 50), 30)), domain="coqa",
                                  gold_answer=f"crimson lantern {i}"), 0.0)
    results = drain(core)
    share = sum(r.correct for r in results) / n
    assert abs(share - profile.quality_for("coqa")) < 0.035
    for r in results:
        last_line = r.text.split("\n")[-1]
        gold = f"crimson lantern {r.request_id[1:]}"
        if r.correct:
            assert last_line == gold
        else:
            assert not set(last_line.lower().split()) & set(gold.split())
    assert all(r.correct is None for r in workload_without_gold(core))


def workload_without_gold(core: EngineCore) -> list[EngineResult]:
    core.submit(EngineRequest("plain", render_chat(passage("n", 30))), core.clock)
    return drain(core)


def test_max_tokens_truncates_the_reply():
    core = EngineCore(get_profile("qwen3-4b"))
    short = ask(core, "short", passage("t", 50), max_tokens=2, domain="hotpotqa", gold_answer="x y z")
    assert short.completion_tokens == 2 and short.finish_reason == "length"
    assert short.correct is False and short.text
    prompt = render_chat(passage("t", 50)) + GENERATION_PROMPT
    assert count_tokens(prompt + short.text) - count_tokens(prompt) <= 2
    assert core.stats.finished["length"] == 1


def test_streaming_progress_grows_to_the_full_reply():
    core = EngineCore(get_profile("qwen3-8b"))
    core.submit(EngineRequest("s", render_chat(passage("s", 50)), domain="hotpotqa"), 0.0)
    core.advance(core.next_event_time())  # prefill done: first token out
    first = core.first_token_time("s")
    seen = [core.generated_tokens("s", first + k * 0.05) for k in range(6)]
    assert seen[0] == 1 and seen == sorted(seen) and seen[-1] > 1
    shown = core.partial_text("s", first)
    (result,) = drain(core)
    assert result.completion_tokens >= seen[-1]
    assert shown and result.text.startswith(shown) and len(shown) < len(result.text)


def test_bad_requests_are_refused_with_clear_errors():
    core = EngineCore(get_profile("qwen3-4b"))
    with pytest.raises(ValueError, match="maximum context length"):
        core.submit(EngineRequest("long", "x" * 4 * 5000), 0.0)
    with pytest.raises(ValueError, match="maximum context length"):
        core.submit(EngineRequest("max", "hello", max_tokens=4096), 0.0)
    with pytest.raises(ValueError, match="max_tokens"):
        core.submit(EngineRequest("zero", "hello", max_tokens=0), 0.0)
    with pytest.raises(ValueError, match="non-empty"):
        core.submit(EngineRequest("empty", ""), 0.0)
    with pytest.raises(ValueError, match="gold_answer"):
        core.submit(EngineRequest("gold", "hello", gold_answer=" "), 0.0)
    core.submit(EngineRequest("dup", "hello"), 1.0)
    with pytest.raises(ValueError, match="already in flight"):
        core.submit(EngineRequest("dup", "hello"), 1.0)
    with pytest.raises(ValueError, match="before the engine clock"):
        core.submit(EngineRequest("late", "hello"), 0.5)
    with pytest.raises(ValueError, match="before the engine clock"):
        core.advance(0.5)
    with pytest.raises(ValueError, match="max_num_seqs"):
        EngineCore(get_profile("qwen3-4b"), max_num_seqs=0)
    with pytest.raises(ValueError, match="fewer than max_model_len"):
        EngineCore(get_profile("qwen3-4b"), num_gpu_blocks=8)


def test_advancing_to_infinity_finishes_everything():
    core = EngineCore(get_profile("qwen3-4b"))
    assert core.advance(math.inf) == []
    for i in range(20):
        core.submit(EngineRequest(f"i{i}", render_chat(passage(str(i), 60))), 0.0)
    assert len(core.advance(math.inf)) == 20
    assert core.next_event_time() == math.inf and math.isfinite(core.clock)


def test_load_metrics_follow_the_schedule():
    core = EngineCore(get_profile("qwen3-8b"), max_num_seqs=2)
    assert core.next_event_time() == math.inf and core.kv_usage == 0.0
    for i in range(3):
        core.submit(EngineRequest(f"m{i}", render_chat(passage(str(i), 100)), max_tokens=16), 0.0)
    assert (core.num_running, core.num_waiting) == (2, 1)
    assert 0.0 < core.kv_usage < 1.0
    drain(core)
    assert core.stats.submitted == 3 and sum(core.stats.finished.values()) == 3
    assert core.prefix_cache_hit_rate == core.stats.cached_tokens / core.stats.prompt_tokens


def test_every_reply_has_text_even_at_the_shortest_drawn_length():
    for i in range(400):
        assert draw_reply(0, f"k{i}", "some prompt words here", "coqa", None, 0.5, 8).text
        assert draw_reply(0, f"k{i}", "some prompt words here", "coqa", "gold", 0.5, 8).text
