"""`mercato bench gateway`: the latency each router adds in front of one engine, against that engine direct.

One run starts one zero-delay simulated engine (``mercato engine serve --speed 0``): the "direct"
target. In front of it, one router at a time, each its own child process so that its memory and
CPU can be read with psutil: mercato's gateway (``mercato serve``) with the auction and with round
robin, each with no batching wait (``max_wait_ms: 0``) and with the config's default wait, and,
with ``--peers`` when the ``peers`` group is installed, the real sglang-router with its
``cache_aware`` default and ``round_robin``; and always the floor: a pass-through proxy on the
gateway's own stack that does none of mercato's work (:mod:`mercato.bench.passthrough`), so
that what mercato adds splits into the stack's price and its own work. Per router:

- zero load: sequential requests, in alternating blocks with the engine direct, so that drift on
  the machine hits both alike;
- open loop: the same seeded Poisson schedule at 100, 500 and 1,000 requests/s, sent first to the
  engine direct and then through the router; in between and above them, more rates while the
  router holds every one so far.

Added latency is a percentile through the router minus the same percentile direct: what a client
sees (the headline). mercato's responses say how long each request waited for its micro-batch
(``x-mercato-batch-wait-ms``), a price chosen in the config, so the report also gives what the
gateway adds beyond it. A rate is held when neither side had errors, the router achieved >= 0.9x
the offered rate and its p99 added <= 50 ms; rates above what the load generator holds alone
(:mod:`mercato.bench.gateway_load`) are reported but marked as not meaningful.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from mercato.bench import profile
from mercato.bench.gateway_load import (
    HELD_P99_MS,
    PROFILE,
    Sample,
    alternating,
    client_ceiling,
    held,
    load_pool,
    ms,
    open_loop,
    poisson_arrivals,
)
from mercato.bench.passthrough import passthrough_process
from mercato.bench.peers import SGLANG_POLICIES, mercato_process, sglang_available, sglang_router_process
from mercato.gateway.live.config import AccountingConfig, BatchingConfig, GatewayConfig, PolicyConfig
from mercato.gateway.live.fleet import EngineFleet

RATES: tuple[int, ...] = (100, 500, 1000)  # always measured
SWEEP: tuple[int, ...] = (250, 750, 1500, 2000, 3000, 4000, 6000, 8000)  # while the router holds them all
ENGINE_SEQS = 256
WARMUP_REQUESTS = 100
ZERO_LOAD_BLOCK = 25
HEADLINE = "mercato:auction:wait0"  # the router the targets are read on
PEER = "sglang:cache_aware"  # sglang-router's default policy
FLOOR = "floor:passthrough"  # the gateway's stack with none of mercato's work
TARGET_ZERO_LOAD_P50_MS = 1.5
TARGET_PEER_RATIO = 2.0
TARGET_RATE = 500
TARGET_P50_MS = 3.0
TARGET_P99_MS = 10.0
TARGET_HELD_RATIO = 2.0
# Highest rate held by the gateway at commit c91f211 (issue 14's "today"), per mercato variant: the
# median of five runs of this bench with --gateway-src on a worktree of c91f211 (the engine and the
# load generator of this tree), on the project's shared 2-core machine, 2026-12-03. Spread over the five:
# auction wait 0 100-500, auction 100-250, round_robin wait 0 100-250, round_robin none-500 req/s.
BASELINE_COMMIT = "c91f211"
BASELINE_HELD_RPS: dict[str, int] = {"mercato:auction:wait0": 250, "mercato:auction": 250,
                                      "mercato:round_robin:wait0": 250, "mercato:round_robin": 250}


@dataclass(frozen=True)
class Router:
    """One router under test; ``max_wait_ms`` None keeps the config's default batching wait."""

    name: str
    kind: str  # "mercato", "sglang" or "passthrough"
    policy: str
    max_wait_ms: float | None = None


MERCATO = (Router(HEADLINE, "mercato", "auction", 0.0), Router("mercato:auction", "mercato", "auction"),
           Router("mercato:round_robin:wait0", "mercato", "round_robin", 0.0),
           Router("mercato:round_robin", "mercato", "round_robin"))
SGLANG = tuple(Router(f"sglang:{p}", "sglang", p) for p in SGLANG_POLICIES)
PASSTHROUGH = Router(FLOOR, "passthrough", "none")


@dataclass(frozen=True)
class Settings:
    """What one run measures; ``gateway_src`` runs mercato's gateway from another source tree."""

    seed: int = 0
    duration_s: float = 3.0
    zero_load_requests: int = 300
    rates: tuple[int, ...] = RATES
    sweep: tuple[int, ...] = SWEEP
    warmup_requests: int = WARMUP_REQUESTS
    peers: bool = False
    gateway_src: Path | None = None
    profile_dir: Path | None = None  # sample mercato's gateways with py-spy; raw stacks land here

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.zero_load_requests < 1 or not self.rates or min(self.rates) < 1:
            raise ValueError("duration_s must be > 0, zero_load_requests >= 1 and rates non-empty, >= 1")

    def quick(self) -> Settings:
        """A smoke run of a few seconds per router: few requests, two rates."""
        return replace(self, duration_s=0.5, zero_load_requests=20, rates=(50,), sweep=(100,),
                       warmup_requests=20)

    def routers(self) -> tuple[Router, ...]:
        """mercato's four variants, the floor, and sglang-router's two when asked for and installed."""
        return (*MERCATO, PASSTHROUGH, *(SGLANG if self.peers and sglang_available() else ()))

    def steps(self) -> int:
        """Progress steps at most: the client ceiling, then per router zero load and each rate."""
        return 1 + len(self.routers()) * (1 + len(self.rates) + len(self.sweep))


def _direct_url(fleet: EngineFleet) -> str:
    """The fleet's one engine's chat completions URL: the "direct" target, and the floor's upstream."""
    return f"{fleet.engines[0].url}/chat/completions"


@contextlib.contextmanager
def _started(router: Router, fleet: EngineFleet, workdir: Path,
             gateway_src: Path | None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The router in front of the fleet's one engine; yields its base URL and its process."""
    if router.kind == "sglang":
        with sglang_router_process(fleet, router.policy) as started:
            yield started
        return
    if router.kind == "passthrough":
        with passthrough_process(_direct_url(fleet)) as started:
            yield started
        return
    name = router.name.replace(":", "-")
    wait = {} if router.max_wait_ms is None else {"max_wait_ms": router.max_wait_ms}
    batching = BatchingConfig(**wait)
    config = GatewayConfig(backends=fleet.backend_configs(capacity=ENGINE_SEQS),
                           policy=PolicyConfig(name=router.policy), batching=batching,
                           accounting=AccountingConfig(db=workdir / f"{name}.sqlite"))
    with mercato_process(config, workdir / f"{name}.yaml", gateway_src) as started:
        yield started


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    return [proc, *proc.children(recursive=True)]


def _cpu_s(proc: psutil.Process) -> float:
    """User + system CPU seconds of the process and its children so far."""
    return sum(t.user + t.system for t in (p.cpu_times() for p in _tree(proc)))


def _rss_mib(proc: psutil.Process) -> float:
    return sum(p.memory_info().rss for p in _tree(proc)) / 2**20


def _added(router: Sample, direct: Sample) -> dict[str, float]:
    """Added latency at p50 and p99, as seen by the client and beyond mercato's batching wait."""
    beyond = router.latency - router.wait
    out = {"direct_p50_ms": ms(direct.latency, 50), "direct_p99_ms": ms(direct.latency, 99),
           "router_p50_ms": ms(router.latency, 50), "router_p99_ms": ms(router.latency, 99),
           "batch_wait_p50_ms": ms(router.wait, 50)}
    for q in (50, 99):
        out[f"added_p{q}_ms"] = out[f"router_p{q}_ms"] - out[f"direct_p{q}_ms"]
        out[f"added_beyond_wait_p{q}_ms"] = ms(beyond, q) - out[f"direct_p{q}_ms"]
    return out


def rate_row(rate: int, direct: Sample, through: Sample, ceiling: int) -> dict[str, Any]:
    added = _added(through, direct)
    return {"rate": rate, "requests": through.sent, "errors": through.errors, "direct_errors": direct.errors,
            "offered_rps": through.offered_rps, "achieved_rps": through.achieved_rps,
            "direct_achieved_rps": direct.achieved_rps, **added, "send_lag_p99_ms": through.send_lag_p99_ms,
            "direct_held": held(direct, 0.0),
            "held": held(direct, 0.0) and held(through, added["added_p99_ms"]), "meaningful": rate <= ceiling}


def highest_held(rows: list[dict[str, Any]]) -> tuple[int | None, bool]:
    """Highest meaningful rate held with every lower rate held too; and whether no meaningful rate failed
    (then the router's own limit lies above what this run could offer)."""
    best = None
    for row in rows:  # ascending
        if not row["meaningful"]:
            break
        if not row["held"]:
            return best, False
        best = row["rate"]
    return best, True


def _measure(router: Router, fleet: EngineFleet, pool: ProcessPoolExecutor, settings: Settings,
             ceiling: int, workdir: Path, on_step: Callable[[str], None]) -> dict[str, Any]:
    direct_url = _direct_url(fleet)
    with _started(router, fleet, workdir, settings.gateway_src) as (base_url, popen), \
            contextlib.ExitStack() as sampling:
        url = f"{base_url}/v1/chat/completions"
        proc = psutil.Process(popen.pid)
        warm = np.linspace(0.0, 1.0, settings.warmup_requests)
        for target in (direct_url, url):
            pool.submit(open_loop, target, warm).result()
        stacks = None
        if settings.profile_dir is not None and router.kind == "mercato":
            stacks = settings.profile_dir / f"profile-{router.name.replace(':', '-')}.txt"
            sampling.enter_context(profile.recording(popen.pid, stacks))
        cpu_s = -_cpu_s(proc)  # counted only while the router is driven, not while the engine is direct
        alone, through = pool.submit(alternating, [direct_url, url], settings.zero_load_requests,
                                     ZERO_LOAD_BLOCK).result()
        cpu_s += _cpu_s(proc)
        zero = {"requests": through.sent, "errors": through.errors + alone.errors, **_added(through, alone)}
        on_step(f"{router.name} zero load")
        rows: list[dict[str, Any]] = []
        for rate in sorted({*settings.rates, *settings.sweep}):
            if rate not in settings.rates and (rate > ceiling or not all(r["held"] for r in rows)):
                continue  # the sweep goes on only while the router holds, and within the client's reach
            arrivals = poisson_arrivals(rate, settings.duration_s, settings.seed)
            direct = pool.submit(open_loop, direct_url, arrivals).result()
            cpu_s -= _cpu_s(proc)
            through = pool.submit(open_loop, url, arrivals).result()
            cpu_s += _cpu_s(proc)
            rows.append(rate_row(rate, direct, through, ceiling))
            on_step(f"{router.name} {rate}/s")
        requests = zero["requests"] + sum(r["requests"] for r in rows)
        rss = _rss_mib(proc)
        sampling.close()  # py-spy writes its stacks when it stops
    cpu = None
    if stacks is not None:  # the direct runs between the router's leave it idle: no samples
        stages = profile.breakdown(stacks.read_text(), requests)
        cpu = {"stacks": str(stacks), "stages": [asdict(s) for s in stages]}
    held_rps, lower_bound = highest_held(rows)
    baseline = BASELINE_HELD_RPS.get(router.name)
    return {**asdict(router), "held_rps": held_rps, "held_rps_is_lower_bound": lower_bound,
            "x_baseline": (held_rps or 0) / baseline if baseline else None,
            "rss_mib": rss, "cpu_s": cpu_s, "cpu_s_per_1000": 1e3 * cpu_s / requests,
            "requests": requests, "zero_load": zero, "rates": rows, "profile": cpu}


def _target(key: str, value: float | None, bound: float, unit: str, note: str = "",
            at_least: bool = False) -> dict[str, Any]:
    """One target; ``met`` is None when this run could not measure it (``note`` says why)."""
    met = None if value is None else (value >= bound if at_least else value <= bound)
    return {"target": key, "value": value, "bound": bound, "unit": unit, "at_least": at_least, "met": met,
            "note": note}


def _targets(routers: dict[str, dict[str, Any]], split: dict[str, float] | None) -> list[dict[str, Any]]:
    """Issue 14's targets, read on the auction with no batching wait; ``split``: :func:`floor_split`."""
    head = routers[HEADLINE]
    zero_p50 = head["zero_load"]["added_p50_ms"]
    out = [_target(f"zero_load_added_p50_le_{TARGET_ZERO_LOAD_P50_MS:g}ms", zero_p50, TARGET_ZERO_LOAD_P50_MS,
                   "ms")]
    key = f"zero_load_added_p50_le_{TARGET_PEER_RATIO:g}x_sglang"
    if PEER not in routers:
        out.append(_target(key, None, TARGET_PEER_RATIO, "x", "sglang-router not run"))
    else:
        ratios = {name: zero_p50 / max(r["zero_load"]["added_p50_ms"], 1e-9)
                  for name, r in routers.items() if r["kind"] == "sglang"}
        note = ", ".join(f"x{v:.2f} of {k}" for k, v in ratios.items())
        if split is not None:
            note += f"; {FLOOR} alone x{split['stack_x_peer']:.2f} of {PEER}"
        out.append(_target(key, ratios[PEER], TARGET_PEER_RATIO, "x", note))
    row = next((r for r in head["rates"] if r["rate"] == TARGET_RATE), None)
    for q, bound in ((50, TARGET_P50_MS), (99, TARGET_P99_MS)):
        key = f"{TARGET_RATE}rps_added_p{q}_le_{bound:g}ms"
        if row is None or not row["meaningful"]:
            why = "not in this run" if row is None else "above the client's ceiling"
            out.append(_target(key, None, bound, "ms", f"{TARGET_RATE}/s {why}"))
        else:
            out.append(_target(key, row[f"added_p{q}_ms"], bound, "ms"))
    baseline = BASELINE_HELD_RPS[HEADLINE]
    ratio = (head["held_rps"] or 0) / baseline
    out.append(_target(f"held_rps_ge_{TARGET_HELD_RATIO:g}x_{BASELINE_COMMIT}", ratio, TARGET_HELD_RATIO, "x",
                       f"{head['held_rps']} against {baseline} req/s", at_least=True))
    return out


def floor_split(routers: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """The headline's zero-load added p50 split into the stack's floor and mercato's own work, and
    the floor against sglang-router's when it ran; None without the floor."""
    if FLOOR not in routers:
        return None
    head = routers[HEADLINE]["zero_load"]["added_p50_ms"]
    floor = routers[FLOOR]["zero_load"]["added_p50_ms"]
    split = {"added_p50_ms": head, "stack_p50_ms": floor, "own_p50_ms": head - floor}
    if PEER in routers:
        split["stack_x_peer"] = floor / max(routers[PEER]["zero_load"]["added_p50_ms"], 1e-9)
    return split


def run(settings: Settings, on_step: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure the client's ceiling, then every router; returns the JSON report."""
    results: dict[str, dict[str, Any]] = {}
    with load_pool() as pool:
        client = client_ceiling(pool, (*settings.rates, *settings.sweep), settings.duration_s, settings.seed)
        ceiling = max((int(r["rate"]) for r in client if r["held"]), default=0)
        on_step("client ceiling")
        with tempfile.TemporaryDirectory(prefix="mercato-bench-gateway-") as tmp, \
                EngineFleet([PROFILE], speed=0.0, seed=settings.seed, max_num_seqs=ENGINE_SEQS) as fleet:
            for router in settings.routers():
                results[router.name] = _measure(router, fleet, pool, settings, ceiling, Path(tmp), on_step)
    split = floor_split(results)
    targets = _targets(results, split)
    return {
        "benchmark": "gateway",
        "settings": {**asdict(settings), "gateway_src": str(settings.gateway_src or ""),
                     "profile_dir": str(settings.profile_dir or "")},
        "engine": f"{PROFILE} simulated, speed 0 (no model delay), {ENGINE_SEQS} sequences",
        "default_max_wait_ms": BatchingConfig().max_wait_ms,
        "default_quiet_ms": BatchingConfig().quiet_ms,
        "held_rule": f"no errors, achieved >= 0.9x offered, p99 added <= {HELD_P99_MS:g} ms",
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "peers": {"requested": settings.peers, "installed": sglang_available(),
                  "run": any(r["kind"] == "sglang" for r in results.values())},
        "client": {"ceiling_rps": ceiling, "holds_every_rate_tried": all(r["held"] for r in client),
                   "ladder": client},
        "baseline": {"commit": BASELINE_COMMIT, "held_rps": BASELINE_HELD_RPS},
        "routers": list(results.values()),
        "floor": split,
        "targets": targets,
        "targets_met": {t["target"]: t["met"] for t in targets if t["met"] is not None},
    }
