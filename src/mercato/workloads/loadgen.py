"""The load generator: replays dialogues against any OpenAI-compatible server and measures it.

Behaviour follows the IEMAS client (paper, Appendix C.1): dialogues run concurrently, at most
``concurrency`` at a time (an asyncio semaphore), turns run in order within a dialogue with the
model's own reply appended verbatim, and every turn is a fresh streaming request with the tracing
headers. Optionally, dialogues arrive as a Poisson process instead of all at once.

Each request is measured as the IEMAS reference measures it: TTFT from just before the request
is sent to the first chunk with non-empty content; token counts, including
``prompt_tokens_details.cached_tokens``, from the usage chunk that ``stream_options=
{"include_usage": True}`` asks for. The reply is scored against the gold answer with
:mod:`mercato.workloads.evaluate`.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import openai
from openai import AsyncOpenAI

from mercato.engine.protocol import METADATA_DOMAIN, METADATA_GOLD
from mercato.workloads.dialogue import Dialogue, dialogue_messages
from mercato.workloads.evaluate import is_correct, last_line, rouge_l_f1

HISTORIES = ("model", "gold")
TRACING_HEADERS = ("X-Mercato-Run-Id", "X-Mercato-Dialogue-Id", "X-Mercato-Turn-Number", "X-Mercato-Source")


@dataclass
class RequestRecord:
    """One request as the load generator saw it (a JSONL line of ``mercato loadgen --out``)."""

    run_id: str
    dialogue_id: str
    turn: int
    domain: str
    model: str
    start_ms: float  # since the start of the run
    ttft_ms: float | None  # None when no content arrived
    latency_ms: float
    prompt_tokens: int | None
    cached_tokens: int | None  # None when the server does not report prompt_tokens_details
    completion_tokens: int | None
    served_by: str | None  # the engine's system_fingerprint, when it sends one
    answer: str
    gold: str
    rouge_l: float | None
    correct: bool | None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        """Plain dict for JSON/CSV."""
        return asdict(self)


def v1_url(url: str) -> str:
    """The server's ``/v1`` base URL, whether or not ``url`` already ends with it."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"the server URL must start with http:// or https://, got {url!r}")
    return base if base.endswith("/v1") else f"{base}/v1"


def poisson_offsets(n: int, rate: float | None, seed: int) -> list[float]:
    """Start times (seconds) of ``n`` dialogues: a Poisson process of ``rate`` per second, or all 0."""
    if rate is None:
        return [0.0] * n
    if rate <= 0:
        raise ValueError(f"the Poisson rate must be positive, got {rate}")
    rng = random.Random(seed)
    offsets, t = [], 0.0
    for _ in range(n):
        t += rng.expovariate(rate)
        offsets.append(t)
    return offsets


async def run_load(url: str, dialogues: Sequence[Dialogue], *, model: str | None = None, concurrency: int = 8,
                   poisson_rate: float | None = None, max_tokens: int = 64, seed: int = 0,
                   run_id: str | None = None, api_key: str | None = None,
                   mercato: Mapping[str, Any] | None = None, timeout_s: float = 300.0, max_retries: int = 0,
                   history: str = "model",
                   on_record: Callable[[RequestRecord], None] | None = None) -> list[RequestRecord]:
    """Replay ``dialogues`` against the server at ``url``; one record per request, in finishing order.

    ``model`` None asks the server (``GET /v1/models``) and takes its first model. ``mercato``
    adds fields to the ``"mercato"`` body extension (e.g. ``bid``, ``delta``, ``deadline_ms``);
    ``domain`` and ``gold_answer`` come from the dialogue. A failed request is recorded with its
    error and ends its dialogue (the next turn would need its reply).

    ``history`` "model" appends the model's own replies (the IEMAS client); "gold" appends the
    gold answers instead, so that every server sees byte-identical prompts whatever it replies
    (used to compare engines request by request).
    """
    if history not in HISTORIES:
        raise ValueError(f"history must be one of {', '.join(HISTORIES)}, got {history!r}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    offsets = poisson_offsets(len(dialogues), poisson_rate, seed)
    run_id = run_id or uuid.uuid4().hex[:12]
    records: list[RequestRecord] = []
    client = AsyncOpenAI(base_url=v1_url(url), api_key=api_key or "mercato", max_retries=max_retries,
                         timeout=timeout_s)
    async with client:
        if model is None:
            model = await _first_model(client)
        semaphore = asyncio.Semaphore(concurrency)
        start = time.perf_counter()
        session = _Session(client, model, run_id, max_tokens, dict(mercato or {}), start)

        async def dialogue_task(dialogue: Dialogue, offset: float) -> None:
            await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
            async with semaphore:
                replies: list[str] = []
                for turn in range(1, len(dialogue.turns) + 1):
                    record = await session.request(dialogue, turn, replies)
                    records.append(record)
                    if on_record is not None:
                        on_record(record)
                    if record.error is not None:
                        return
                    replies.append(record.answer if history == "model" else record.gold)

        await asyncio.gather(*(dialogue_task(d, o) for d, o in zip(dialogues, offsets, strict=True)))
    return records


async def _first_model(client: AsyncOpenAI) -> str:
    try:
        page = await client.models.list()
    except openai.APIError as exc:
        raise ValueError(f"cannot list the server's models ({exc}); pass a model name") from None
    if not page.data:
        raise ValueError("the server lists no models; pass a model name")
    return page.data[0].id


@dataclass
class _Session:
    """What every request of one run shares: client, model, run id, clock origin."""

    client: AsyncOpenAI
    model: str
    run_id: str
    max_tokens: int
    extension: dict[str, Any]
    start: float

    async def request(self, dialogue: Dialogue, turn: int, replies: list[str]) -> RequestRecord:
        """Send one turn as a streaming request and measure it."""
        gold = dialogue.turns[turn - 1].answer
        headers = dict(zip(TRACING_HEADERS, (self.run_id, dialogue.dialogue_id, str(turn), dialogue.source),
                           strict=True))
        # The domain and gold answer ride twice: in mercato's own extension (read by the gateway and
        # the simulated engine) and in OpenAI's standard ``metadata``, which routers that drop
        # unknown fields still forward, so answers are scored alike through any router.
        body = {"mercato": {**self.extension, "domain": dialogue.domain, "gold_answer": gold},
                "metadata": {METADATA_DOMAIN: dialogue.domain, METADATA_GOLD: gold}}
        sent = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        usage: Any = None
        served_by: str | None = None
        error: str | None = None
        try:
            stream = await self.client.chat.completions.create(
                model=self.model, messages=dialogue_messages(dialogue, turn, replies),
                max_tokens=self.max_tokens, temperature=0.0, stream=True,
                stream_options={"include_usage": True}, extra_headers=headers, extra_body=body)
            async for chunk in stream:
                served_by = chunk.system_fingerprint or served_by
                if chunk.choices and chunk.choices[0].delta.content:
                    if first is None:
                        first = time.perf_counter()
                    parts.append(chunk.choices[0].delta.content)
                if chunk.usage is not None:
                    usage = chunk.usage
        except openai.APIError as exc:
            error = f"{type(exc).__name__}: {exc}"
        done = time.perf_counter()
        answer = "".join(parts)
        details = getattr(usage, "prompt_tokens_details", None)
        scored = error is None
        return RequestRecord(
            run_id=self.run_id, dialogue_id=dialogue.dialogue_id, turn=turn, domain=dialogue.domain,
            model=self.model, start_ms=1e3 * (sent - self.start),
            ttft_ms=None if first is None else 1e3 * (first - sent), latency_ms=1e3 * (done - sent),
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            cached_tokens=getattr(details, "cached_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None), served_by=served_by,
            answer=answer, gold=gold,
            rouge_l=rouge_l_f1(last_line(answer), gold) if scored else None,
            correct=is_correct(answer, gold) if scored else None, error=error)


def summarize(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Requests, errors, TTFT p50/p95, KV hit rate (mean cached/prompt per request), accuracy."""
    ok = [r for r in records if r.error is None]
    ttfts = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    latencies = [r.latency_ms for r in ok]
    ratios = [r.cached_tokens / r.prompt_tokens for r in ok
              if r.cached_tokens is not None and r.prompt_tokens]
    scored = [r.correct for r in ok if r.correct is not None]
    span_s = max((r.start_ms + r.latency_ms for r in records), default=0.0) / 1e3

    def pct(values: list[float], q: float) -> float | None:
        return float(np.percentile(values, q)) if values else None

    return {
        "requests": len(records),
        "errors": len(records) - len(ok),
        "dialogues": len({r.dialogue_id for r in records}),
        "ttft_p50_ms": pct(ttfts, 50),
        "ttft_p95_ms": pct(ttfts, 95),
        "latency_p50_ms": pct(latencies, 50),
        "latency_p95_ms": pct(latencies, 95),
        "kv_hit_rate": float(np.mean(ratios)) if ratios else None,
        "accuracy": float(np.mean(scored)) if scored else None,
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in ok),
        "cached_tokens": sum(r.cached_tokens or 0 for r in ok),
        "completion_tokens": sum(r.completion_tokens or 0 for r in ok),
        "wall_s": span_s,
        "requests_per_s": len(ok) / span_s if span_s > 0 else None,
    }
