"""Start-up probes: each backend's first-token overhead and prefill rate, measured before traffic.

The router's queueing model (:mod:`mercato.gateway.core.latency`) starts every backend from one
prior (20 ms idle, 100 ms per uncached k-token) and learns a backend's speed only from what it
sends there. A backend the auction has never sent a cold prompt to keeps the prior, so a faster
engine that looks no faster is never chosen for one: an exploration gap no price can close. Two
cold prompts of different lengths, sent one after another to each idle backend, pin its overhead
and prefill rate down before the first buyer's request arrives.

A probe is a real request (``max_tokens`` 1): the backend's circuit breaker counts it, nothing
else does (no ledger record, no buyer, no metrics). Its prompt opens with a random nonce, so no
engine has any of it cached, even after a restart of the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass

import numpy as np
import orjson

from mercato.gateway.core.types import RoutingCore
from mercato.gateway.live.backends import Backend, BackendPool, Forwarding
from mercato.gateway.live.config import ProbeConfig
from mercato.gateway.live.errors import APIError
from mercato.gateway.live.wire import CHAT, parse_request

log = logging.getLogger("mercato.gateway")

# Short common words: about one token each for BPE tokenizers (the simulated engine's 4-character
# pieces make about 1.5 of each: 32 and 1024 words gave 55-61 and 1515-1536 tokens).
_WORDS = ("time", "year", "way", "day", "man", "thing", "life", "child", "world", "school", "state",
          "family", "group", "country", "problem", "hand", "part", "place", "case", "week", "company",
          "system", "program", "question", "work", "number", "night", "point", "home", "water",
          "room", "mother", "area", "money", "story", "fact", "month", "lot", "right", "study")


@dataclass(frozen=True)
class ProbeResult:
    """One probe: the backend, the cold prompt tokens it prefilled, and its time to first token."""

    backend: str
    uncached_tokens: int
    ttft_s: float


def probe_prompt(words: int, rng: np.random.Generator) -> str:
    """A prompt of ``words`` words that no engine has cached: a random nonce, then common words."""
    picks = rng.integers(len(_WORDS), size=max(words - 1, 0))
    return secrets.token_hex(8) + " " + " ".join(_WORDS[i] for i in picks)


async def probe_once(pool: BackendPool, backend: Backend, words: int,
                     rng: np.random.Generator) -> ProbeResult | None:
    """One cold prompt at ``backend``; None when it failed or its answer had no usage or no token."""
    body = {"model": backend.config.model, "max_tokens": 1, "temperature": 0.0,
            "messages": [{"role": "user", "content": probe_prompt(words, rng)}]}
    fw = Forwarding(pool, parse_request(CHAT, orjson.dumps(body)), [backend.name],
                    f"probe-{secrets.token_hex(6)}", restartable=True,
                    on_attempt=lambda _: None, on_abandon=lambda _: None)
    try:
        await fw.complete()
    except APIError as err:
        log.warning("prefill probe of %s failed: %s", backend.name, err.message)
        return None
    counts = fw.result.usage_counts()
    if fw.ttft_s is None or counts is None:
        log.warning("prefill probe of %s: the answer had no %s", backend.name,
                    "token" if fw.ttft_s is None else "usage")
        return None
    prompt, cached, _ = counts
    return ProbeResult(backend.name, prompt - cached, fw.ttft_s)


async def probe_backend(pool: BackendPool, backend: Backend, config: ProbeConfig,
                        seed: int) -> list[ProbeResult]:
    """Every probe of one backend, one at a time (so each meets an idle engine), after one
    unmeasured warm-up: the first request opens the connection and pays an engine's one-time
    costs (seen: 39 ms where the next one took 3), which a fitted rate must not absorb."""
    rng = np.random.default_rng(seed)
    if await probe_once(pool, backend, min(config.prompt_words), rng) is None:
        return []
    results = []
    for _ in range(config.repeats):
        for words in config.prompt_words:
            result = await probe_once(pool, backend, words, rng)
            if result is None:
                return results  # a backend that fails a probe is not probed further
            results.append(result)
    return results


async def calibrate(pool: BackendPool, router: RoutingCore, config: ProbeConfig,
                    seed: int = 0) -> list[ProbeResult]:
    """Probe all backends at once (each its own engine) and teach the router what they measured.

    Gives up on what is unfinished after ``config.timeout_s``; the router keeps its prior there.
    """
    backends = list(pool.backends.values())
    tasks = [asyncio.create_task(probe_backend(pool, b, config, seed + i)) for i, b in enumerate(backends)]
    start = time.perf_counter()
    done, pending = await asyncio.wait(tasks, timeout=config.timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    results = [r for task in tasks if task in done for r in task.result()]
    for r in results:
        router.calibrate(r.backend, r.uncached_tokens, r.ttft_s)
        log.info("prefill probe of %s: %d cold prompt tokens, first token after %.1f ms", r.backend,
                 r.uncached_tokens, r.ttft_s * 1e3)
    log.info("prefill probes: %d of %d backends measured in %.1f s%s", len({r.backend for r in results}),
             len(backends), time.perf_counter() - start,
             f" ({len(pending)} timed out after {config.timeout_s:g} s)" if pending else "")
    return results
