"""The load generator of `mercato bench gateway`, and the null server that measures its own ceiling.

The generator runs in a worker process of its own (:func:`load_pool`), not in the bench process,
so that the bench's progress bar, its psutil polling and the children it starts never hold the
interpreter the clock runs in. It sends non-streaming chat requests with aiohttp on uvloop, the
cheapest Python client here in CPU per request, and times each one from the moment it is sent to
the last byte of its response. Arrivals are open loop (:func:`open_loop`): a seeded Poisson
schedule fixed in advance, each request sent at its time whether or not earlier ones returned.

A load generator that falls behind its schedule understates the latency of whatever it drives,
so the bench first measures what this one can hold by itself (:func:`client_ceiling`): the same
schedules against :func:`serve_null`, a server in another process that answers every request with
a canned response and does no other work, judged by the rule a router must pass (no errors,
achieved >= 0.9x offered, p99 <= 50 ms). A null server rather than the engine, because the engine
is one of the things that may saturate first; another process rather than this one, because in
the bench the servers never share the generator's interpreter either. Rates above that ceiling
are reported, but marked as not meaningful.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from typing import cast

import aiohttp
import numpy as np
import uvloop

from mercato.gateway.live.fleet import stop_process, wait_ready
from mercato.heap import freeze_startup_objects
from mercato.ports import free_port

PROFILE = "qwen3-8b"
PROMPT = [{"role": "system", "content": "Answer in one short sentence."},
          {"role": "user", "content": "Which harbour did the green boat leave before dawn?"}]
MAX_TOKENS = 16
HELD_P99_MS = 50.0
HELD_SHARE = 0.9  # achieved over offered rate, at least
BATCH_WAIT_HEADER = "x-mercato-batch-wait-ms"
_BODY = json.dumps({"model": PROFILE, "messages": PROMPT, "max_tokens": MAX_TOKENS}).encode()
_HEADERS = {"content-type": "application/json"}
_TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass(frozen=True)
class Sample:
    """One run against one URL: latency and batch wait (s) of each successful request."""

    latency: np.ndarray
    wait: np.ndarray
    sent: int
    errors: int
    offered_rps: float  # requests over the schedule's span (open loop only)
    achieved_rps: float  # successful requests from the first send to the last reply (open loop only)
    send_lag_p99_ms: float  # how late the generator sent, against its schedule
    cpu_s: float  # the generator's own CPU time for the run (open loop only)


def ms(values: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of ``values`` (s) in ms; NaN when there are none."""
    return float(np.percentile(values, q) * 1e3) if values.size else float("nan")


def poisson_arrivals(rate: int, duration_s: float, seed: int) -> np.ndarray:
    """Seeded Poisson arrival times (s) for ``rate`` requests/s over about ``duration_s``."""
    rng = np.random.default_rng([seed, rate])
    return np.cumsum(rng.exponential(1.0 / rate, size=max(1, round(rate * duration_s))))


def held(sample: Sample, added_p99_ms: float) -> bool:
    """The rule of the bench: no errors, >= 0.9x the offered rate, p99 added <= 50 ms.

    Offered is the schedule's own rate, not its nominal one: a seeded draw of 300 arrivals at
    100/s may span 3.2 s, and a server that keeps up with it should not count as falling behind.
    """
    return bool(sample.errors == 0 and sample.achieved_rps >= HELD_SHARE * sample.offered_rps
                and added_p99_ms <= HELD_P99_MS)  # a plain bool: numpy's would not go into the JSON report


async def _post(session: aiohttp.ClientSession, url: str) -> tuple[float, float] | None:
    """(latency s, batch wait s) of one request, or None when it failed."""
    start = time.perf_counter()
    try:
        async with session.post(url, data=_BODY, headers=_HEADERS) as response:
            await response.read()
            if response.status != 200:
                return None
            wait = float(response.headers.get(BATCH_WAIT_HEADER, 0.0)) / 1e3
    except (aiohttp.ClientError, TimeoutError):
        return None
    return time.perf_counter() - start, wait


def _sample(results: Sequence[tuple[float, float] | None], span_s: float, offered: float, lag: np.ndarray,
            cpu_s: float) -> Sample:
    ok = [r for r in results if r is not None]
    latency = np.array([r[0] for r in ok])
    wait = np.array([r[1] for r in ok])
    achieved = len(ok) / span_s if span_s > 0 else float("nan")
    lag_ms = float(np.percentile(lag, 99) * 1e3) if lag.size else 0.0
    return Sample(latency, wait, len(results), len(results) - len(ok), offered, achieved, lag_ms, cpu_s)


async def _open_loop(urls: Sequence[str], arrivals: np.ndarray) -> Sample:
    cpu0 = time.process_time()
    lag = np.zeros(len(arrivals))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=_TIMEOUT) as session:
        t0 = time.perf_counter()

        async def timed(i: int) -> tuple[float, float] | None:
            lag[i] = time.perf_counter() - t0 - arrivals[i]
            return await _post(session, urls[i % len(urls)])

        tasks = []
        for i, at in enumerate(arrivals):
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(timed(i)))
        results = await asyncio.gather(*tasks)
        span = time.perf_counter() - t0
    return _sample(results, span, len(arrivals) / arrivals[-1], lag, time.process_time() - cpu0)


def open_loop(url: str | Sequence[str], arrivals: np.ndarray) -> Sample:
    """Send one request to ``url`` at each arrival time (s from now), in a loop of its own; several
    URLs take the requests in turn (several engines called direct, as a router would spread them)."""
    return uvloop.run(_open_loop([url] if isinstance(url, str) else url, arrivals))


async def _alternating(urls: Sequence[str], n: int, block: int) -> list[Sample]:
    results: list[list[tuple[float, float] | None]] = [[] for _ in urls]
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
        while len(results[0]) < n:
            for k, url in enumerate(urls):
                for _ in range(min(block, n - len(results[k]))):
                    results[k].append(await _post(session, url))
    nan = float("nan")  # no schedule, so no rates; the generator's CPU is shared by every URL
    return [_sample(r, 0.0, nan, np.zeros(0), nan) for r in results]


def alternating(urls: Sequence[str], n: int, block: int) -> list[Sample]:
    """``n`` sequential requests to each URL, in alternating blocks of ``block`` so that drift on
    the machine hits every URL alike; one sample per URL."""
    return uvloop.run(_alternating(urls, n, block))


@contextmanager
def load_pool() -> Iterator[ProcessPoolExecutor]:
    """One worker process for the generator; submit :func:`open_loop` or :func:`alternating`."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=freeze_startup_objects) as pool:
        yield pool


_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)")
_NULL_BODY = json.dumps({"object": "chat.completion", "model": PROFILE, "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "North."}, "finish_reason": "stop"}]}).encode()
_NULL_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                  + str(len(_NULL_BODY)).encode() + b"\r\n\r\n" + _NULL_BODY)


class _NullProtocol(asyncio.Protocol):
    """Answers each HTTP/1.1 request on a keep-alive connection with the canned response."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's are not asyncio subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = _LENGTH.search(self.buffer[:end + 2].lower())
            size = end + 4 + (int(length.group(1)) if length else 0)
            if len(self.buffer) < size:
                return
            self.buffer = self.buffer[size:]
            assert self.transport is not None
            self.transport.write(_NULL_RESPONSE)


async def _serve_null(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_NullProtocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def serve_null(port: int) -> None:
    """Serve the canned response on ``port`` until killed (``python -m mercato.bench.gateway_load``)."""
    uvloop.run(_serve_null(port))


@contextmanager
def null_server(timeout_s: float = 30.0) -> Iterator[str]:
    """:func:`serve_null` in a child process; yields its chat completions URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mercato.bench.gateway_load", str(port)])
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        wait_ready(proc, url, timeout_s, "the null server")  # it answers any request
        yield url
    finally:
        stop_process(proc)


def client_ceiling(pool: ProcessPoolExecutor, rates: Sequence[int], duration_s: float,
                   seed: int) -> list[dict[str, float | int | bool]]:
    """The generator alone against the null server, at rising ``rates`` until one is not held."""
    rows: list[dict[str, float | int | bool]] = []
    with null_server() as url:
        pool.submit(open_loop, url, poisson_arrivals(200, 0.5, seed)).result()  # warm-up
        for rate in sorted(rates):
            s = pool.submit(open_loop, url, poisson_arrivals(rate, duration_s, seed)).result()
            p99 = ms(s.latency, 99)
            rows.append({"rate": rate, "achieved_rps": s.achieved_rps, "p50_ms": ms(s.latency, 50),
                         "p99_ms": p99, "send_lag_p99_ms": s.send_lag_p99_ms, "errors": s.errors,
                         "cpu_s_per_1000": 1e3 * s.cpu_s / s.sent, "held": held(s, p99)})
            if not rows[-1]["held"]:
                break
    return rows


if __name__ == "__main__":
    serve_null(int(sys.argv[1]))
