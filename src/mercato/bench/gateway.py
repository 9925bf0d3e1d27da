"""`mercato bench gateway`: the latency the gateway adds, against the same engine called directly.

One run starts a zero-delay simulated engine (``mercato engine serve --speed 0``) and, in front of
it, one gateway process (``mercato serve``, auction policy, IEMAS batching: 16 requests or 10 ms).
At each rate, the same seeded Poisson arrival schedule of non-streaming chat requests goes first to
the engine directly, then through the gateway. Every gateway response says how long the request
waited for its micro-batch (``x-mercato-batch-wait-ms``); that wait is the price of batching,
chosen in the config, so the overhead reported is what remains:

    added p = percentile_p(gateway latency - batch wait) - percentile_p(direct latency)

It includes everything else the gateway does per request: parsing and validation, routing
(features, predictions, auction, payments), forced streaming from the engine and the rebuilt
JSON, predictor updates and the ledger commit, which the response waits for (the config's
durability level; its cost is measured and reported as ``ledger_commit_ms``). The
load generator is this process; the engine and the gateway are one process each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import yaml

from mercato.bench.timing import median_ms
from mercato.gateway.core.types import LedgerRecord
from mercato.gateway.live.config import BackendConfig
from mercato.gateway.live.fleet import EngineFleet, free_port, stop_process
from mercato.gateway.live.ledger import SQLiteAccountingStore

RATES: tuple[int, ...] = (100, 250, 500, 1000, 1500, 2000)
TARGET_RATE = 500
REPORTED_RATES = (100, TARGET_RATE)  # always measured; the others only until a rate is not held
TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0
HELD_P99_MS = 50.0
PROFILE = "qwen3-8b"
PROMPT = [{"role": "system", "content": "Answer in one short sentence."},
          {"role": "user", "content": "Which harbour did the green boat leave before dawn?"}]
MAX_TOKENS = 16
ENGINE_SEQS = 256
WARMUP_REQUESTS = 100


@dataclass(frozen=True)
class RateResult:
    """Latencies at one offered rate (ms), direct and through the gateway."""

    rate: int
    requests: int
    errors: int
    achieved_rps: float
    direct_p50_ms: float
    direct_p99_ms: float
    gateway_p50_ms: float
    gateway_p99_ms: float
    batch_wait_p50_ms: float
    batch_wait_p99_ms: float
    added_p50_ms: float
    added_p99_ms: float
    held: bool


@contextlib.contextmanager
def _child(args: list[str], health_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A ``python -m mercato ...`` child process, ready once ``health_url`` answers 200."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mercato", *args], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60.0
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health_url, timeout=1.0).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`mercato {' '.join(args)}` did not start; see {log}")
            time.sleep(0.1)
        yield proc
    finally:
        stop_process(proc, timeout_s=15)


def _gateway_config(engine: BackendConfig, port: int, workdir: Path) -> Path:
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "backends": [engine.model_dump(mode="json") | {"capacity": ENGINE_SEQS}],
        "policy": {"name": "auction"},
        "accounting": {"db": str(workdir / "ledger.sqlite")},
    }
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def _drive(url: str, arrivals: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Send one request at each arrival time (s); returns latencies (s), batch waits (s), errors, rps.

    The generator uses aiohttp, whose client costs a fraction of httpx's CPU per request, so that
    on a small machine the load generator takes as little CPU as possible from the servers.
    """
    n = len(arrivals)
    latency = np.full(n, np.nan)
    wait = np.zeros(n)
    done_at = np.zeros(n)
    errors = 0
    body = json.dumps({"model": PROFILE, "messages": PROMPT, "max_tokens": MAX_TOKENS}).encode()
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(i: int) -> None:
            nonlocal errors
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
                    batch_wait = float(response.headers.get("x-mercato-batch-wait-ms", 0.0)) / 1000.0
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            end = time.perf_counter()
            if not ok:
                errors += 1
                return
            latency[i] = end - start
            done_at[i] = end
            wait[i] = batch_wait

        tasks = []
        t0 = time.perf_counter()
        for i, at in enumerate(arrivals):
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    ok = ~np.isnan(latency)
    span = float(done_at[ok].max() - t0) if ok.any() else float("inf")
    return latency[ok], wait[ok], errors, int(ok.sum()) / span


def _commit_ms(workdir: Path, repeats: int = 20) -> float:
    """Median time of one ledger commit (default durability) on the disk the ledger lives on."""
    store = SQLiteAccountingStore(workdir / "probe.sqlite")
    ids = itertools.count()

    def commit() -> None:
        store.record(LedgerRecord(f"probe-{next(ids)}", 0.0, "bench", "engine", PROFILE, "auction", 1, 0, 1,
                                  0.0, 0.0, 0.0, False))

    try:
        return median_ms(commit, repeats=repeats, warmup=0)
    finally:
        store.close()


def _ms(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q) * 1e3) if values.size else float("nan")


def _measure(rate: int, direct_url: str, gateway_url: str, duration_s: float, seed: int,
             on_step: Callable[[str], None] | None) -> RateResult:
    rng = np.random.default_rng([seed, rate])
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=max(1, round(rate * duration_s))))
    direct, _, direct_errors, _ = asyncio.run(_drive(direct_url, arrivals))
    if on_step is not None:
        on_step(f"direct {rate}/s")
    through, wait, errors, achieved = asyncio.run(_drive(gateway_url, arrivals))
    if on_step is not None:
        on_step(f"gateway {rate}/s")
    beyond = through - wait
    added_p50 = _ms(beyond, 50) - _ms(direct, 50)
    added_p99 = _ms(beyond, 99) - _ms(direct, 99)
    held = errors == 0 and direct_errors == 0 and achieved >= 0.9 * rate and added_p99 <= HELD_P99_MS
    return RateResult(rate, len(arrivals), errors + direct_errors, achieved, _ms(direct, 50), _ms(direct, 99),
                      _ms(through, 50), _ms(through, 99), _ms(wait, 50), _ms(wait, 99), added_p50, added_p99,
                      held)


def run(seed: int = 0, duration_s: float = 2.0, rates: tuple[int, ...] = RATES,
        on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure the rates (the sweep stops at the first rate not held) and return the JSON report.

    The highest rate held counts only rates below the first one that failed.
    """
    if duration_s <= 0 or not rates:
        raise ValueError("duration_s must be > 0 and rates non-empty")
    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    results: list[RateResult] = []
    with tempfile.TemporaryDirectory(prefix="mercato-bench-gateway-") as tmp, \
            EngineFleet([PROFILE], speed=0.0, seed=seed, max_num_seqs=ENGINE_SEQS) as fleet:
        workdir = Path(tmp)
        commit_ms = _commit_ms(workdir)
        (engine,) = fleet.backend_configs()
        engine_url = engine.url
        config = _gateway_config(engine, gateway_port, workdir)
        with _child(["serve", "--config", str(config)], f"{gateway_url}/ready", workdir / "gateway.log"):
            warm = np.linspace(0.0, 1.0, WARMUP_REQUESTS)
            for url in (f"{engine_url}/chat/completions", f"{gateway_url}/v1/chat/completions"):
                asyncio.run(_drive(url, warm))
            failed = False
            for rate in sorted(rates):
                if failed and rate not in REPORTED_RATES:
                    continue  # past the first rate not held, only the reported rates still run
                result = _measure(rate, f"{engine_url}/chat/completions",
                                  f"{gateway_url}/v1/chat/completions", duration_s, seed, on_step)
                results.append(result)
                failed = failed or not result.held
    by_rate = {r.rate: r for r in results}
    at_target = by_rate.get(TARGET_RATE)
    held = []
    for r in results:
        if not r.held:
            break
        held.append(r.rate)
    return {
        "benchmark": "gateway",
        "seed": seed,
        "duration_s": duration_s,
        "engine": f"{PROFILE} simulated, speed 0 (no model delay)",
        "batching": {"max_batch_size": 16, "max_wait_ms": 10},
        "ledger_commit_ms": commit_ms,
        "load_average_1m": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "rates": [asdict(r) for r in results],
        "max_rate_p99_added_le_50ms": max(held) if held else None,
        "targets_met": {
            f"{TARGET_RATE}rps_added_p50_le_{TARGET_P50_MS:g}ms":
                at_target is not None and at_target.added_p50_ms <= TARGET_P50_MS,
            f"{TARGET_RATE}rps_added_p99_le_{TARGET_P99_MS:g}ms":
                at_target is not None and at_target.added_p99_ms <= TARGET_P99_MS,
        },
    }
