"""The simulated vLLM instance on a virtual clock: scheduling, KV blocks, prefill and decode.

Time model (one vLLM instance with --enable-prefix-caching, no preemption):

* Requests wait in a FIFO queue and are admitted, head first, while fewer than
  ``max_num_seqs`` run and the block pool can hold the whole sequence (prompt and generated
  tokens); a head that does not fit blocks the queue, as vLLM's FCFS scheduler does.
* Prefill is compute-bound and shared: uncached prompt tokens go through one FIFO server at the
  profile's prefill rate, and the first token cannot come sooner than one batch-1 step after
  admission (reading the weights once). TTFT = queueing + prefill of the uncached tokens.
* Decode runs in discrete steps. A step produces one token for every decoding sequence and lasts
  ``profile.decode_step_seconds(batch)``; a sequence whose prefill ends mid-step joins at the
  next step boundary. Between events the batch does not change, so the engine jumps straight to
  the boundary where the next sequence finishes instead of stepping token by token.

The cached tokens it reports follow vLLM: whole blocks only, and never the whole prompt (the
last prompt token is always recomputed, so at most ``(prompt_tokens - 1) // 16`` blocks hit).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from dataclasses import dataclass, field

from mercato.engine.answers import draw_reply
from mercato.engine.chat import END, GENERATION_PROMPT
from mercato.engine.kv_cache import (
    BLOCK_CHARS,
    BLOCK_TOKENS,
    ROOT_HASH,
    BlockPool,
    ChainCache,
    block_hashes,
    blocks_for,
)
from mercato.engine.kv_events import KVEventLog
from mercato.engine.profiles import ModelProfile
from mercato.engine.tokenizer import count_tokens, truncate_tokens

# Events closer than this (virtual seconds) count as simultaneous: a first token that comes out
# together with a decode-step boundary joins the batch at that boundary. Without the tolerance,
# float rounding would order such ties (common: a request admitted alone gets its first token
# exactly one batch-1 step later) differently in differently-summed but equal schedules.
TIE_S = 1e-9


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One chat request: ``prompt`` is ``render_chat(messages)``.

    ``max_tokens`` None means up to the model's context length; ``gold_answer`` lets the engine
    decide correctness; ``sample_key`` (default: ``request_id``) keys the deterministic draws.
    """

    request_id: str
    prompt: str
    max_tokens: int | None = None
    domain: str = "default"
    gold_answer: str | None = None
    sample_key: str | None = None


@dataclass(frozen=True, slots=True)
class EngineResult:
    """What one finished request cost and returned, in virtual seconds."""

    request_id: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    text: str
    arrival: float
    first_token_time: float
    finish_time: float
    correct: bool | None
    finish_reason: str = "stop"  # "length" when max_tokens cut the reply
    scheduled_time: float = 0.0  # when it left the waiting queue

    @property
    def ttft(self) -> float:
        """Time to first token, queueing included."""
        return self.first_token_time - self.arrival

    @property
    def latency(self) -> float:
        """Arrival to last token."""
        return self.finish_time - self.arrival


@dataclass
class EngineStats:
    """Counters since start (the engine's Prometheus metrics read them)."""

    prompt_tokens: int = 0  # of admitted requests: the prefix-cache queries
    cached_tokens: int = 0  # prefix-cache hits
    submitted: int = 0  # requests accepted by submit
    generation_tokens: int = 0  # of finished requests
    finished: Counter[str] = field(default_factory=Counter)  # finish reason -> requests


class _Seq:
    """Engine-side state of one request."""

    __slots__ = ("arrival", "cached", "completion", "correct", "finish_reason", "first_token", "full",
                 "hashes", "held", "hit_limit", "join_step", "prompt_tokens", "request_id",
                 "scheduled", "text", "total_blocks")

    def __init__(self, request_id: str, arrival: float) -> None:
        self.request_id = request_id
        self.arrival = arrival
        self.cached = 0
        self.first_token = math.inf
        self.join_step = -1  # decode step count when it joined the batch; -1 before
        self.scheduled = math.inf
        self.held: list[int] = []


class EngineCore:
    """A discrete-event model of one vLLM instance; drive it with submit / next_event_time / advance."""

    def __init__(self, profile: ModelProfile, max_num_seqs: int = 12, gpu_memory_utilization: float = 0.6,
                 seed: int = 0, num_gpu_blocks: int | None = None, max_model_len: int | None = None,
                 chain_cache: bool = True, kv_events: KVEventLog | None = None) -> None:
        """``kv_events``: where the pool's block stores and evictions are logged (vLLM's KV events)."""
        if max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be at least 1, got {max_num_seqs}")
        self.profile = profile
        self.max_num_seqs = max_num_seqs
        self.seed = seed
        self.max_model_len = profile.max_model_len if max_model_len is None else max_model_len
        if num_gpu_blocks is None:
            num_gpu_blocks = profile.kv_cache_tokens(gpu_memory_utilization) // BLOCK_TOKENS
        if self.max_model_len < 1:
            raise ValueError(f"max_model_len must be at least 1, got {self.max_model_len}")
        if num_gpu_blocks * BLOCK_TOKENS < self.max_model_len:
            raise ValueError(
                f"the KV cache holds {num_gpu_blocks * BLOCK_TOKENS} tokens, fewer than max_model_len "
                f"({self.max_model_len}); lower max_model_len or give the cache more memory")
        self.kv_events = kv_events
        self.pool = BlockPool(num_gpu_blocks, kv_events.removed if kv_events is not None else None)
        # remembers recent sequences' block hashes so a dialogue's next turn hashes only its new
        # blocks; an optimisation with no effect on results (off: the benchmark's ablation)
        self._chains = ChainCache() if chain_cache else None
        self.stats = EngineStats()
        self._step_table = [profile.decode_step_seconds(b) for b in range(max_num_seqs + 1)]
        self._prefill_rate = profile.prefill_tokens_per_s
        self._clock = 0.0
        self._counter = 0  # tie-breaker that keeps heap order = admission order
        self._waiting: deque[_Seq] = deque()
        self._active: dict[str, _Seq] = {}
        self._num_running = 0
        self._prefill_free = 0.0  # when the prefill server finishes its current work
        self._prefilling: list[tuple[float, int, _Seq]] = []  # (first-token time, counter, seq)
        self._decoding: list[tuple[int, int, _Seq]] = []  # (step count at finish, counter, seq)
        self._joining: list[_Seq] = []  # prefill done, waiting for the next step boundary
        self._steps = 0  # decode steps completed since start
        self._step_start = 0.0  # start of the step in progress (valid while decoding)
        self._step_len = 0.0
        self._outbox: list[EngineResult] = []

    # -- load, as the gateway and /metrics see it ------------------------------------------------

    @property
    def clock(self) -> float:
        """Virtual time the engine has been advanced to."""
        return self._clock

    @property
    def num_running(self) -> int:
        """Requests admitted and not finished (prefilling or decoding)."""
        return self._num_running

    @property
    def num_waiting(self) -> int:
        """Requests queued for a slot or for KV blocks."""
        return len(self._waiting)

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks referenced by running requests (cached free blocks excluded)."""
        return self.pool.used / self.pool.num_blocks

    @property
    def decode_steps(self) -> int:
        """Decode steps completed since start (one token for every sequence in the batch)."""
        return self._steps

    @property
    def prefix_cache_hit_rate(self) -> float:
        """Cached over queried prompt tokens since start (0 before any request)."""
        queried = self.stats.prompt_tokens
        return self.stats.cached_tokens / queried if queried else 0.0

    def reset_prefix_cache(self) -> bool:
        """Drop every cached block (vLLM's ``/reset_prefix_cache``); False while requests hold blocks."""
        if not self.pool.reset():
            return False
        if self.kv_events is not None:
            self.kv_events.cleared()
        return True

    # -- the driving interface ---------------------------------------------------------------------

    def submit(self, request: EngineRequest, now: float) -> None:
        """Queue ``request`` arriving at virtual time ``now``; ValueError if it can never run."""
        if now < self._clock - TIE_S:
            raise ValueError(f"submit at t={now} is before the engine clock t={self._clock}")
        now = max(now, self._clock)
        if request.request_id in self._active:
            raise ValueError(f"request id {request.request_id!r} is already in flight")
        seq = self._prepare(request, now)
        self._run_until(now)
        self._waiting.append(seq)
        self._active[request.request_id] = seq
        self.stats.submitted += 1
        self._admit(now)

    def next_event_time(self) -> float:
        """Virtual time of the next internal event (math.inf when idle)."""
        t_prefill = self._prefilling[0][0] if self._prefilling else math.inf
        return min(t_prefill, self._next_step_event())

    def advance(self, until: float) -> list[EngineResult]:
        """Process every event up to ``until``; return the requests finished since the last call."""
        if until < self._clock - TIE_S:
            raise ValueError(f"advance(until={until}) is before the engine clock t={self._clock}")
        self._run_until(until)
        done, self._outbox = self._outbox, []
        return done

    def first_token_time(self, request_id: str) -> float:
        """When an in-flight request gets (or got) its first token; math.inf while it waits."""
        return self._active[request_id].first_token

    def generated_tokens(self, request_id: str, at: float) -> int:
        """Completion tokens an in-flight request has produced by virtual time ``at``."""
        seq = self._active[request_id]
        if at < seq.first_token:
            return 0
        if seq.join_step < 0:
            return 1
        steps = self._steps
        if self._decoding and at > self._step_start:
            steps += int((at - self._step_start) / self._step_len)
        return min(seq.completion, 1 + steps - seq.join_step)

    def partial_text(self, request_id: str, at: float) -> str:
        """The part of an in-flight request's reply out by virtual time ``at`` (for streaming)."""
        seq = self._active[request_id]
        shown = -(-len(seq.text) * self.generated_tokens(request_id, at) // seq.completion)
        return seq.text[:shown]

    # -- internals ----------------------------------------------------------------------------------

    def _prepare(self, request: EngineRequest, now: float) -> _Seq:
        """Validate, tokenize, hash and draw the reply of a new request."""
        prompt = request.prompt
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("the prompt must be a non-empty string")
        if not isinstance(request.domain, str):
            raise ValueError(f"domain must be a string, got {type(request.domain).__name__}")
        gold = request.gold_answer
        if gold is not None and (not isinstance(gold, str) or not gold.strip()):
            raise ValueError(f"gold_answer must be a non-empty string, got {gold!r}")
        full_prompt = prompt + GENERATION_PROMPT
        prompt_tokens = count_tokens(full_prompt)
        limit = self.max_model_len
        if prompt_tokens >= limit:
            raise ValueError(
                f"This model's maximum context length is {limit} tokens. However, your request has "
                f"{prompt_tokens} input tokens. Please reduce the length of the input messages.")
        max_tokens = request.max_tokens
        if max_tokens is None:
            max_tokens = limit - prompt_tokens
        elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        elif prompt_tokens + max_tokens > limit:
            raise ValueError(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in "
                "the completion). Please reduce the length of the messages or completion.")
        reply = draw_reply(self.seed, request.sample_key or request.request_id, prompt, request.domain,
                           gold, self.profile.quality_for(request.domain), len(END))
        seq = _Seq(request.request_id, now)
        full = full_prompt + reply.text + END
        completion = count_tokens(full) - prompt_tokens
        if completion > max_tokens:
            full = truncate_tokens(full, prompt_tokens + max_tokens)
            completion = max_tokens
            seq.text = full[len(full_prompt):len(full_prompt) + len(reply.text)]
            seq.finish_reason = "length"
            seq.correct = reply.correct and len(seq.text) == len(reply.text)
        else:
            seq.text = reply.text
            seq.finish_reason = "stop"
            seq.correct = reply.correct
        seq.full = full
        seq.prompt_tokens = prompt_tokens
        seq.completion = completion
        seq.total_blocks = blocks_for(prompt_tokens + completion)
        seq.hashes = self._prompt_hashes(full_prompt)
        seq.hit_limit = (prompt_tokens - 1) // BLOCK_TOKENS
        return seq

    def _prompt_hashes(self, full_prompt: str) -> list[int]:
        """Chained hashes of the prompt's full blocks (reusing a previous turn's through the chain cache)."""
        if self._chains is None:
            return block_hashes(full_prompt, 0, len(full_prompt) // BLOCK_CHARS, ROOT_HASH)
        return self._chains.hashes(full_prompt)

    def _run_until(self, until: float) -> None:
        """Process prefill completions and decode-step boundaries in time order up to ``until``."""
        while True:
            t_prefill = self._prefilling[0][0] if self._prefilling else math.inf
            t_step = self._next_step_event()
            if t_prefill == t_step == math.inf:
                break
            if t_prefill <= t_step + TIE_S:
                if t_prefill > until:
                    break
                self._clock = t_prefill
                self._end_prefill(t_prefill)
            else:
                if t_step > until:
                    break
                self._clock = t_step
                self._step_to(t_step)
        if until > self._clock and until != math.inf:
            self._clock = until

    def _admit(self, now: float) -> None:
        """Move waiting requests into the running set while slots and blocks allow (FCFS)."""
        waiting, pool, stats = self._waiting, self.pool, self.stats
        while waiting and self._num_running < self.max_num_seqs:
            seq = waiting[0]
            got = pool.acquire(seq.hashes, seq.total_blocks)
            if got is None:
                return
            waiting.popleft()
            shared, seq.held = got
            if self.kv_events is not None:
                self.kv_events.stored(seq.hashes[shared:], seq.hashes[shared - 1] if shared else None,
                                      seq.full, shared)
            seq.cached = min(shared, seq.hit_limit) * BLOCK_TOKENS
            seq.scheduled = now
            stats.prompt_tokens += seq.prompt_tokens
            stats.cached_tokens += seq.cached
            start = now if now > self._prefill_free else self._prefill_free
            self._prefill_free = start + (seq.prompt_tokens - seq.cached) / self._prefill_rate
            seq.first_token = max(self._prefill_free, now + self._step_table[1])
            self._counter += 1
            heapq.heappush(self._prefilling, (seq.first_token, self._counter, seq))
            self._num_running += 1

    def _end_prefill(self, t: float) -> None:
        """The first token of the earliest prefilling request is out: finish it or queue it for decode."""
        _, counter, seq = heapq.heappop(self._prefilling)
        if seq.completion == 1:
            self._finish(seq, t)
            self._admit(t)
        elif not self._decoding or t - self._step_start <= TIE_S:
            # the decoder is idle, or its step starts right now: take part in this step
            if not self._decoding:
                self._step_start = t
            seq.join_step = self._steps
            heapq.heappush(self._decoding, (self._steps + seq.completion - 1, counter, seq))
            self._step_len = self._step_table[len(self._decoding)]
        else:
            if not self._joining:
                # the decoder jumped over boundaries where nothing changed: move it to the step in
                # progress (never past the boundary where the next sequence finishes)
                skipped = min(int((t - TIE_S - self._step_start) / self._step_len),
                              self._decoding[0][0] - self._steps - 1)
                if skipped > 0:
                    self._steps += skipped
                    self._step_start += skipped * self._step_len
            self._joining.append(seq)

    def _next_step_event(self) -> float:
        """The next step boundary at which a sequence finishes or joins (math.inf when idle)."""
        if not self._decoding:
            return math.inf
        return self._step_start + self._steps_until_event() * self._step_len

    def _steps_until_event(self) -> int:
        """Decode steps to the next boundary where the batch changes: the analytic jump."""
        return 1 if self._joining else self._decoding[0][0] - self._steps

    def _step_to(self, t: float) -> None:
        """Complete the decode steps up to boundary ``t``."""
        decoding = self._decoding
        self._steps += self._steps_until_event()
        self._step_start = t
        finished = []
        while decoding and decoding[0][0] <= self._steps:
            finished.append(heapq.heappop(decoding)[2])
        self._rebatch(t, finished)

    def _rebatch(self, t: float, finished: list[_Seq]) -> None:
        """At a step boundary: report finished sequences, let waiting ones join, admit new ones."""
        for seq in finished:
            self._finish(seq, t)
        self._join(self._steps)
        if self._decoding:
            self._step_len = self._step_table[len(self._decoding)]
        if finished:
            self._admit(t)

    def _join(self, steps: int) -> None:
        """Sequences waiting at this step boundary enter the decode batch."""
        for seq in self._joining:
            seq.join_step = steps
            self._counter += 1
            heapq.heappush(self._decoding, (steps + seq.completion - 1, self._counter, seq))
        self._joining.clear()

    def _finish(self, seq: _Seq, t: float) -> None:
        """Release a finished request's blocks (caching its filled decode blocks) and report it."""
        full, hashes = seq.full, seq.hashes
        parent = hashes[-1] if hashes else ROOT_HASH
        filled = block_hashes(full, len(hashes), len(full) // BLOCK_CHARS, parent)
        cached = self.pool.release(seq.held, seq.total_blocks, filled)
        if self.kv_events is not None:
            self.kv_events.stored(filled[:cached], hashes[-1] if hashes else None, full, len(hashes))
        if self._chains is not None:
            self._chains.remember(full, hashes + filled)
        self._num_running -= 1
        del self._active[seq.request_id]
        self.stats.generation_tokens += seq.completion
        self.stats.finished[seq.finish_reason] += 1
        self._outbox.append(EngineResult(
            seq.request_id, seq.prompt_tokens, seq.cached, seq.completion, seq.text, seq.arrival,
            seq.first_token, t, seq.correct, seq.finish_reason, seq.scheduled))
