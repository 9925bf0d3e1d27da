"""`mercato bench engine`: simulated requests per wall-second of the in-process engine.

Workload: ``synthetic_dialogues("coqa", ...)`` (a ~270-word passage, 15 short questions with
gold answers), the engine's own replies appended to the history verbatim. A closed loop keeps
``CONCURRENT_DIALOGUES`` dialogues in flight on one engine (qwen3-8b, ``max_num_seqs`` 12): a
dialogue's next turn is submitted the moment its previous turn finishes, in virtual time. The
timed part is the whole simulation: prompt building, engine, result handling. Prompts grow by
appending the rendered new messages, which equals rendering ``dialogue_messages`` afresh.

Baselines, same workload, same run, one process:

* ``stepped``: the same engine with decode stepped one token at a time, an event per decode step
  that visits every running sequence to count its tokens and detect its end, the way a
  straightforward token-level simulator works;
* ``no_chain_cache``: the same engine hashing every prompt block from scratch on every request
  instead of reusing the previous turn's hash chain.

All three must return identical results (checked, reported as ``identical_results``).
Rates are per wall-second (the target) and, because the machine may be shared, also per second
of this process's CPU time, which other processes disturb much less.
"""

from __future__ import annotations

import heapq
import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from mercato.engine import EngineCore, EngineRequest, EngineResult, get_profile
from mercato.engine.chat import render_chat
from mercato.workloads import Dialogue, dialogue_messages, synthetic_dialogues

PROFILE = "qwen3-8b"
DIALOGUES = 400
TURNS = 15
CONCURRENT_DIALOGUES = 48
MAX_TOKENS = 64
REPEATS = 3
TARGET_REQUESTS_PER_S = 20_000.0
VARIANTS = ("mercato", "stepped", "no_chain_cache")


class SteppedEngineCore(EngineCore):
    """Baseline: decode stepped token by token, each step visiting every running sequence."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._produced: dict[str, int] = {}  # request id -> tokens so far

    def _steps_until_event(self) -> int:
        return 1

    def _step_to(self, t: float) -> None:
        self._steps += 1
        self._step_start = t
        produced, ended = self._produced, []
        for entry in self._decoding:
            seq = entry[2]
            count = produced.get(seq.request_id, 1) + 1  # the first token came with the prefill
            if count == seq.completion:
                ended.append(entry)
                produced.pop(seq.request_id, None)
            else:
                produced[seq.request_id] = count
        if ended:
            gone = {id(entry) for entry in ended}
            self._decoding = [entry for entry in self._decoding if id(entry) not in gone]
            heapq.heapify(self._decoding)
            ended.sort(key=lambda entry: entry[1])
        self._rebatch(t, [entry[2] for entry in ended])


def drive(core: EngineCore, dialogues: list[Dialogue],
          concurrency: int = CONCURRENT_DIALOGUES) -> list[EngineResult]:
    """Run every dialogue to its last turn on ``core`` (closed loop); results in finish order."""
    prompts = [""] * len(dialogues)
    turn = [0] * len(dialogues)  # turns finished
    owner: dict[str, int] = {}
    queue = deque(range(len(dialogues)))
    results: list[EngineResult] = []

    def submit(d: int, now: float) -> None:
        dialogue = dialogues[d]
        if turn[d] == 0:
            prompts[d] = render_chat(dialogue_messages(dialogue, 1, []))
        else:
            prompts[d] += render_chat([{"role": "user", "content": dialogue.turns[turn[d]].question}])
        request_id = f"{dialogue.dialogue_id}/{turn[d] + 1}"
        owner[request_id] = d
        core.submit(EngineRequest(request_id, prompts[d], max_tokens=MAX_TOKENS, domain=dialogue.domain,
                                  gold_answer=dialogue.turns[turn[d]].answer), now)

    for _ in range(min(concurrency, len(dialogues))):
        submit(queue.popleft(), 0.0)
    while (t := core.next_event_time()) != math.inf:
        for result in core.advance(t):
            results.append(result)
            d = owner.pop(result.request_id)
            prompts[d] += render_chat([{"role": "assistant", "content": result.text}])
            turn[d] += 1
            if turn[d] < len(dialogues[d].turns):
                submit(d, t)
            elif queue:
                submit(queue.popleft(), t)
    return results


def _make(variant: str, seed: int) -> EngineCore:
    profile = get_profile(PROFILE)
    if variant == "stepped":
        return SteppedEngineCore(profile, seed=seed)
    return EngineCore(profile, seed=seed, chain_cache=variant != "no_chain_cache")


def _same(a: list[EngineResult], b: list[EngineResult]) -> bool:
    """Equal results, finish times up to float rounding (the two decode models sum steps differently)."""
    if len(a) != len(b):
        return False
    by_id = {r.request_id: r for r in b}
    for r in a:
        o = by_id.get(r.request_id)
        if o is None or (r.cached_tokens, r.completion_tokens, r.text, r.correct) != (
                o.cached_tokens, o.completion_tokens, o.text, o.correct):
            return False
        if not (math.isclose(r.first_token_time, o.first_token_time, rel_tol=1e-9, abs_tol=1e-9)
                and math.isclose(r.finish_time, o.finish_time, rel_tol=1e-9, abs_tol=1e-9)):
            return False
    return True


def run(seed: int = 0, dialogues: int = DIALOGUES, repeats: int = REPEATS,
        on_run: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time the engine and both baselines on one workload, ``repeats`` interleaved runs each."""
    workload = synthetic_dialogues("coqa", dialogues, seed=seed, turns=TURNS)
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu_seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    outputs: dict[str, list[EngineResult]] = {}
    cores: dict[str, EngineCore] = {}
    for _ in range(repeats):
        for variant in VARIANTS:
            core = _make(variant, seed)
            start, start_cpu = time.perf_counter(), time.process_time()
            outputs[variant] = drive(core, workload)
            seconds[variant].append(time.perf_counter() - start)
            cpu_seconds[variant].append(time.process_time() - start_cpu)
            cores[variant] = core
            if on_run is not None:
                on_run(variant)
    requests = len(outputs["mercato"])
    rates = {v: {"requests_per_s_median": requests / statistics.median(s),
                 "requests_per_s_best": requests / min(s),
                 "requests_per_cpu_s_median": requests / statistics.median(cpu_seconds[v]),
                 "seconds": s, "cpu_seconds": cpu_seconds[v]} for v, s in seconds.items()}
    results, core = outputs["mercato"], cores["mercato"]
    ttfts = sorted(r.ttft for r in results)
    return {
        "workload": {"kind": "synthetic_dialogues('coqa')",
                     "dialogues": dialogues, "turns": TURNS, "concurrent_dialogues": CONCURRENT_DIALOGUES,
                     "max_tokens": MAX_TOKENS, "profile": PROFILE, "max_num_seqs": core.max_num_seqs,
                     "seed": seed},
        "requests": requests,
        "repeats": repeats,
        "variants": rates,
        "speedup_vs_stepped": rates["mercato"]["requests_per_s_median"]
                              / rates["stepped"]["requests_per_s_median"],
        "speedup_vs_no_chain_cache": rates["mercato"]["requests_per_s_median"]
                                     / rates["no_chain_cache"]["requests_per_s_median"],
        "identical_results": all(_same(results, outputs[v]) for v in VARIANTS[1:]),
        "simulated": {
            "virtual_seconds": core.clock,
            "prefix_cache_hit_rate": core.prefix_cache_hit_rate,
            "mean_ttft_ms": 1e3 * statistics.fmean(ttfts),
            "p95_ttft_ms": 1e3 * ttfts[int(0.95 * (len(ttfts) - 1))],
            "decode_steps": core.decode_steps,
            "accuracy": statistics.fmean(bool(r.correct) for r in results),
        },
        "target_requests_per_s": TARGET_REQUESTS_PER_S,
        "target_met": rates["mercato"]["requests_per_s_median"] >= TARGET_REQUESTS_PER_S,
    }
