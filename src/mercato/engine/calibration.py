"""Calibrating the simulator against the real engine (llama.cpp + SmolLM2-135M, one CPU thread).

Two steps, both against a ``llama-server`` started here on 127.0.0.1 (:mod:`mercato.engine.real`):

1. **Speed.** Prefill: fresh prompts of the workload's lengths (about 100 to 650 tokens) with
   the prompt cache off and one output token; the rate is their tokens over their client-side
   TTFTs, so HTTP, templating and the first sampling are folded into it, as they are in the TTFT
   the replay compares (a straight-line fit gave a negative intercept: prefill is not linear
   in length on this CPU, and the shared machine adds noise). Decode: llama.cpp's
   own ``timings`` of a 64-token generation (``ignore_eos``), alone and with a second sequence
   decoding beside it (two slots), which gives the per-sequence slowdown of a decode step.
   Rates are converted from SmolLM2 tokens to simulator tokens (4 characters) with the ratio of
   the two tokenizers' counts on the same prompts, and become the profile ``smollm2-135m-cpu``.
2. **Replay.** The same 8 synthetic CoQA dialogues go to both engines one request at a time,
   dialogues in sequence (the server keeps its two slots, the simulator runs one sequence with a
   block pool as large as those two slots). Histories are the *gold* answers, not each engine's own
   replies, so both engines see byte-identical prompts and differ only in how they time and
   cache them. Per request: relative TTFT error of the simulator, and the cached-token error.

Tokenizers differ (SmolLM2's BPE against the simulator's 4-character pieces), so cached counts
are compared after conversion: the simulator's cached *fraction* of its prompt, times the real
prompt's token count, against the real ``cached_tokens``. Agreement within one block (16
tokens) is expected; the simulator counts whole blocks, llama.cpp counts tokens.

Numbers measured on a shared 2-core machine are noisy; the report says when and where.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from mercato.engine.chat import GENERATION_PROMPT, render_chat
from mercato.engine.core import EngineCore, EngineRequest
from mercato.engine.kv_cache import BLOCK_TOKENS
from mercato.engine.profiles import ModelProfile
from mercato.engine.real import CTX_PER_SLOT, MODEL_NAME, RealEngine, server_binary
from mercato.engine.smollm2 import KV_BYTES_PER_TOKEN as KV_BYTES_PER_TOKEN
from mercato.engine.smollm2 import MEASURED as MEASURED
from mercato.engine.smollm2 import PROFILE_NAME as PROFILE_NAME
from mercato.engine.smollm2 import WEIGHTS_BYTES as WEIGHTS_BYTES
from mercato.engine.smollm2 import measured_profile as measured_profile
from mercato.engine.smollm2 import smollm2_profile as smollm2_profile
from mercato.engine.tokenizer import count_tokens

PREFILL_LENGTHS = (64, 128, 256, 384, 512)  # words of fresh prompt text, the workload's prompt range
DECODE_TOKENS = 64
REPLAY_DIALOGUES = 8
REPLAY_TURNS = 8
REPLAY_MAX_TOKENS = 16
RESULTS = Path("results/engine/calibration")

Messages = list[dict[str, str]]
Conversation = Sequence[tuple[Messages, str]]  # per turn: the request's messages, the gold answer
Judge = Callable[[str, str], bool]  # (reply, gold) -> correct


def _client(url: str) -> httpx.Client:
    """A client that opens a fresh connection per request: llama-server sometimes closes a kept-alive
    connection right after a short streamed reply, and the next request on it would fail."""
    return httpx.Client(base_url=url, timeout=300.0, limits=httpx.Limits(max_keepalive_connections=0))


def _stream_chat(client: httpx.Client, messages: Messages, max_tokens: int, **extra: Any) -> dict[str, Any]:
    """One streamed chat request: client-side TTFT (ms), reply, usage and llama.cpp's timings."""
    body = {"model": MODEL_NAME, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0,
            "stream": True, "stream_options": {"include_usage": True}, **extra}
    sent = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    out: dict[str, Any] = {"usage": {}, "timings": {}}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                if first is None:  # the first token's chunk (content, or the role when it is empty)
                    first = time.perf_counter()
                parts.append(choice.get("delta", {}).get("content") or "")
            out["usage"] = chunk.get("usage") or out["usage"]
            out["timings"] = chunk.get("timings") or out["timings"]
    done = time.perf_counter()
    out["ttft_ms"] = 1e3 * ((first or done) - sent)
    out["text"] = "".join(parts)
    return out


def measure_speed(url: str, texts: Sequence[str], on_step: Callable[[], None] = lambda: None,
                  repeats: int = 2) -> dict[str, Any]:
    """Prefill and decode rates of the server at ``url`` (SmolLM2 tokens per second).

    ``texts`` supply fresh prompt text (joined and cut to :data:`PREFILL_LENGTHS` words).
    """
    words = " ".join(texts).split()
    if len(words) < max(PREFILL_LENGTHS):
        raise ValueError(f"need at least {max(PREFILL_LENGTHS)} words of text, got {len(words)}")
    points = []
    with _client(url) as client:
        for n in PREFILL_LENGTHS:
            for k in range(repeats):
                messages = [{"role": "user", "content": f"Note {n}-{k}. " + " ".join(words[:n])}]
                got = _stream_chat(client, messages, 1, cache_prompt=False)
                points.append({"words": n, "prompt_tokens": got["usage"]["prompt_tokens"],
                               "ttft_ms": got["ttft_ms"], "llama_prompt_ms": got["timings"].get("prompt_ms")})
                on_step()
        decode_messages = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]
        alone = _stream_chat(client, decode_messages, DECODE_TOKENS, ignore_eos=True)["timings"]
        on_step()
        pair: list[dict[str, Any]] = []

        def decode() -> None:
            pair.append(_stream_chat(client, decode_messages, DECODE_TOKENS, ignore_eos=True)["timings"])

        threads = [threading.Thread(target=decode) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        on_step()
    tokens = sum(p["prompt_tokens"] for p in points)
    one = alone["predicted_per_second"]
    two = statistics.fmean(t["predicted_per_second"] for t in pair)
    return {
        "prefill_tokens_per_s": tokens / (1e-3 * sum(p["ttft_ms"] for p in points)),
        "llama_prompt_tokens_per_s": tokens / (1e-3 * sum(p["llama_prompt_ms"] or 0.0 for p in points)),
        "decode_tokens_per_s": float(one),
        "decode_tokens_per_s_each_of_two": float(two),
        "decode_batch_slowdown": max(0.0, float(one / two - 1.0)),
        "prefill_points": points,
    }


def replay_real(url: str, conversations: Sequence[Conversation], on_step: Callable[[], None] = lambda: None,
                judge: Judge | None = None) -> list[dict[str, Any]]:
    """Send every turn of every conversation, one at a time, in order; one row per request."""
    rows = []
    with _client(url) as client:
        for d, conversation in enumerate(conversations):
            for t, (messages, gold) in enumerate(conversation, start=1):
                got = _stream_chat(client, messages, REPLAY_MAX_TOKENS)
                usage = got["usage"]
                rows.append({
                    "dialogue": d, "turn": t, "sim_prompt": render_chat(messages) + GENERATION_PROMPT,
                    "real_ttft_ms": got["ttft_ms"], "real_prompt_tokens": usage["prompt_tokens"],
                    "real_cached_tokens": usage.get("prompt_tokens_details", {}).get("cached_tokens", 0),
                    "real_correct": judge(got["text"], gold) if judge else None,
                })
                on_step()
    return rows


def replay_simulated(profile: ModelProfile, rows: list[dict[str, Any]], seed: int = 0) -> None:
    """The same requests, in the same order, one at a time, on the simulator; adds ``sim_*`` to ``rows``.

    One sequence at a time (the real server answers one request at a time here too) and a block
    pool as large as the server's two slots of context.
    """
    core = EngineCore(profile, max_num_seqs=1, num_gpu_blocks=2 * CTX_PER_SLOT // BLOCK_TOKENS,
                      max_model_len=profile.max_model_len, seed=seed)
    now = 0.0
    for k, row in enumerate(rows):
        core.submit(EngineRequest(f"r{k}", row["sim_prompt"][:-len(GENERATION_PROMPT)],
                                  max_tokens=REPLAY_MAX_TOKENS), now)
        done = []
        while not done:
            done = core.advance(core.next_event_time())
        result = done[0]
        now = result.finish_time
        row["sim_ttft_ms"] = 1e3 * result.ttft
        row["sim_prompt_tokens"] = result.prompt_tokens
        row["sim_cached_tokens"] = result.cached_tokens


def compare(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-request errors of the simulator against the real server, and per-turn medians."""
    for row in rows:
        row["ttft_relative_error"] = abs(row["sim_ttft_ms"] - row["real_ttft_ms"]) / row["real_ttft_ms"]
        converted = row["sim_cached_tokens"] / row["sim_prompt_tokens"] * row["real_prompt_tokens"]
        row["sim_cached_as_real_tokens"] = converted
        row["cached_error_tokens"] = converted - row["real_cached_tokens"]
    errors = [abs(r["cached_error_tokens"]) for r in rows]
    per_turn = []
    for turn in sorted({r["turn"] for r in rows}):
        at = [r for r in rows if r["turn"] == turn]
        per_turn.append({
            "turn": turn,
            "real TTFT ms": statistics.median(r["real_ttft_ms"] for r in at),
            "sim TTFT ms": statistics.median(r["sim_ttft_ms"] for r in at),
            "TTFT rel. error": statistics.median(r["ttft_relative_error"] for r in at),
            "real cached": statistics.median(r["real_cached_tokens"] for r in at),
            "sim cached (real tokens)": statistics.median(r["sim_cached_as_real_tokens"] for r in at),
            "real cached frac": statistics.fmean(r["real_cached_tokens"] / r["real_prompt_tokens"]
                                                 for r in at),
            "sim cached frac": statistics.fmean(r["sim_cached_tokens"] / r["sim_prompt_tokens"] for r in at),
        })
    judged = [r["real_correct"] for r in rows if r["real_correct"] is not None]
    return {
        "requests": len(rows),
        "median_relative_ttft_error": statistics.median(r["ttft_relative_error"] for r in rows),
        "mean_relative_ttft_error": statistics.fmean(r["ttft_relative_error"] for r in rows),
        "cached_within_one_block": sum(e <= BLOCK_TOKENS for e in errors) / len(errors),
        "median_abs_cached_error_tokens": statistics.median(errors),
        "max_abs_cached_error_tokens": max(errors),
        "real_accuracy": statistics.fmean(judged) if judged else None,
        "per_turn": per_turn,
    }


def calibrate_against_real(conversations: Sequence[Conversation], *, seed: int = 0,
                           judge: Judge | None = None, out_dir: Path | None = RESULTS,
                           on_step: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Measure the real engine, build the ``smollm2-135m-cpu`` profile, replay both, compare.

    Returns ``{"skipped": reason}`` when llama-server is not built. ``on_step`` is called once per
    measurement and per replayed request (:func:`calibration_steps` of them), for a progress bar.
    Writes JSON, CSV, a PNG and a markdown summary to ``out_dir`` unless it is None.
    """
    if server_binary() is None:
        return {"skipped": "llama-server is not built: run `mercato engine real build`"}
    texts = [messages[0]["content"] for conversation in conversations for messages, _ in conversation[:1]]
    with RealEngine.start(slots=2) as engine:
        speed = measure_speed(engine.url, texts, on_step)
        rows = replay_real(engine.url, conversations, on_step, judge)
    ratio = sum(count_tokens(r["sim_prompt"]) for r in rows) / sum(r["real_prompt_tokens"] for r in rows)
    accuracy = statistics.fmean(r["real_correct"] for r in rows) if judge else MEASURED["accuracy"]
    profile = smollm2_profile(speed["prefill_tokens_per_s"] * ratio, speed["decode_tokens_per_s"] * ratio,
                              speed["decode_batch_slowdown"], accuracy)
    replay_simulated(profile, rows, seed)
    # what the simulator has no term for: the real TTFT beyond prefilling the uncached tokens
    per_ms = speed["prefill_tokens_per_s"] / 1e3
    overhead = statistics.median(
        r["real_ttft_ms"] - (r["real_prompt_tokens"] - r["real_cached_tokens"]) / per_ms
        for r in rows if r["turn"] > 1)
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": 1,
                    "note": "shared machine: other jobs ran beside the measurement, rates are noisy"},
        "speed": {**{k: v for k, v in speed.items() if k != "prefill_points"},
                  "sim_tokens_per_real_token": ratio},
        "profile": {"name": profile.name, "prefill_tokens_per_s": profile.prefill_tokens_per_s,
                    "decode_tokens_per_s": profile.decode_tokens_per_s,
                    "decode_batch_slowdown": profile.decode_batch_slowdown, "quality": dict(profile.quality)},
        "replay": {"dialogues": len(conversations), "max_tokens": REPLAY_MAX_TOKENS,
                   "history": "gold answers", "real_ttft_overhead_ms": overhead,
                   **compare(rows)},
    }
    if out_dir is not None:
        report["files"] = [str(p) for p in write_results(out_dir, report, rows, speed["prefill_points"])]
    return report


def calibration_steps(conversations: Sequence[Conversation], repeats: int = 2) -> int:
    """How many times :func:`calibrate_against_real` calls ``on_step``."""
    return len(PREFILL_LENGTHS) * repeats + 2 + sum(len(c) for c in conversations)


def write_results(out_dir: Path, report: dict[str, Any], rows: list[dict[str, Any]],
                  points: list[dict[str, Any]]) -> list[Path]:
    """calibration.json, requests.csv, prefill.csv, calibration.png and calibration.md under ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mercato.reporting import write_csv, write_json

    columns = ["dialogue", "turn", "real_ttft_ms", "sim_ttft_ms", "ttft_relative_error", "real_prompt_tokens",
               "sim_prompt_tokens", "real_cached_tokens", "sim_cached_tokens", "sim_cached_as_real_tokens",
               "cached_error_tokens", "real_correct"]
    files = [write_json(out_dir / "calibration.json", report),
             write_csv(out_dir / "requests.csv", rows, columns),
             write_csv(out_dir / "prefill.csv", points)]
    per_turn = report["replay"]["per_turn"]
    turns = [p["turn"] for p in per_turn]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(turns, [p["real TTFT ms"] for p in per_turn], "o-", label="llama.cpp (real)")
    left.plot(turns, [p["sim TTFT ms"] for p in per_turn], "s--", label="simulator")
    left.set(xlabel="turn", ylabel="median TTFT (ms)", title="TTFT per turn")
    right.plot(turns, [p["real cached frac"] for p in per_turn], "o-", label="llama.cpp (real)")
    right.plot(turns, [p["sim cached frac"] for p in per_turn], "s--", label="simulator")
    right.set(xlabel="turn", ylabel="cached / prompt tokens", title="prefix-cache hits per turn", ylim=(0, 1))
    for axis in (left, right):
        axis.legend()
        axis.grid(alpha=0.3)
    fig.tight_layout()
    png = out_dir / "calibration.png"
    fig.savefig(png, dpi=80)
    plt.close(fig)
    files.append(png)
    speed, replay = report["speed"], report["replay"]
    summary = out_dir / "calibration.md"
    summary.write_text(
        "# Simulator vs llama.cpp (SmolLM2-135M-Instruct Q4_1, one CPU thread)\n\n"
        f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs, shared with other jobs "
        "(rates are noisy).\n\n"
        f"- prefill {speed['prefill_tokens_per_s']:.0f} tokens/s (client-side TTFT; llama.cpp's own "
        f"timing {speed['llama_prompt_tokens_per_s']:.0f} tokens/s), "
        f"decode {speed['decode_tokens_per_s']:.1f} tokens/s alone, "
        f"{speed['decode_tokens_per_s_each_of_two']:.1f} each with two sequences "
        f"(step slowdown {speed['decode_batch_slowdown']:.2f} per extra sequence)\n"
        f"- {speed['sim_tokens_per_real_token']:.3f} simulator tokens per SmolLM2 token on this workload\n"
        f"- replay: {replay['dialogues']} synthetic CoQA dialogues, {replay['requests']} requests, "
        "gold-answer histories, one request at a time\n"
        f"- median relative TTFT error {replay['median_relative_ttft_error']:.3f} "
        f"(mean {replay['mean_relative_ttft_error']:.3f})\n"
        f"- cached tokens within one block (16): {replay['cached_within_one_block']:.0%} of requests "
        f"(median error {replay['median_abs_cached_error_tokens']:.1f}, max "
        f"{replay['max_abs_cached_error_tokens']:.1f} tokens)\n"
        f"- the real TTFT of turns 2+ exceeds uncached prefill at that rate by a median "
        f"{replay['real_ttft_overhead_ms']:.0f} ms per request (HTTP, templating, tokenising, sampling), "
        "a fixed cost the simulator's profile has no term for\n\n"
        "![TTFT and cache hits per turn](calibration.png)\n")
    files.append(summary)
    return files


def print_calibration(report: dict[str, Any]) -> None:
    """The calibration section of ``mercato bench engine`` as tables."""
    from mercato.reporting import print_table, stderr, stdout

    if "skipped" in report:
        stderr.print(f"calibration against the real engine skipped: {report['skipped']}")
        return
    speed, replay, profile = report["speed"], report["replay"], report["profile"]
    print_table("real engine (llama.cpp, SmolLM2-135M, 1 CPU thread) -> profile smollm2-135m-cpu", [
        {"name": "prefill tokens/s (SmolLM2 tokens)", "value": speed["prefill_tokens_per_s"]},
        {"name": "prefill tokens/s, llama.cpp's own timing", "value": speed["llama_prompt_tokens_per_s"]},
        {"name": "decode tokens/s (one sequence)", "value": speed["decode_tokens_per_s"]},
        {"name": "decode step slowdown per extra sequence", "value": speed["decode_batch_slowdown"]},
        {"name": "simulator tokens per SmolLM2 token", "value": speed["sim_tokens_per_real_token"]},
        {"name": "profile prefill tokens/s (simulator tokens)", "value": profile["prefill_tokens_per_s"]},
        {"name": "profile decode tokens/s (simulator tokens)", "value": profile["decode_tokens_per_s"]},
    ], ["name", "value"])
    print_table(f"simulator vs real, {replay['requests']} requests ({replay['dialogues']} CoQA-like "
                "dialogues, gold histories): medians per turn", replay["per_turn"])
    accuracy = replay["real_accuracy"]
    stdout.print(f"median relative TTFT error {replay['median_relative_ttft_error']:.3f}; cached tokens "
                 f"within one block: {replay['cached_within_one_block']:.0%} (median error "
                 f"{replay['median_abs_cached_error_tokens']:.1f} tokens); real per-request TTFT overhead "
                 f"{replay['real_ttft_overhead_ms']:.0f} ms (not modelled); real accuracy "
                 f"{'n/a' if accuracy is None else f'{accuracy:.3f}'}")
