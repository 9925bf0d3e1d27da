"""`mercato bench replicas`: what gateway replicas behind one port gain, and what sharing state keeps.

Each variant is ``mercato serve --workers N`` with the auction, started by the bench:

- **KV hit**: on a fresh simulated fleet per variant (the routing bench's ``four`` fleet, same
  seeds, one served name, no KV events, so cache state comes from the prefix ledger), the same
  seeded multi-turn dialogues, all at once. A dialogue's turns arrive over whichever pooled
  connection is free, so consecutive turns land on different replicas. With shared state the
  replicas see each other's prefix entries and load; *independent* replicas
  (``state.share_routing: false``) each route on what they saw themselves, which is what running
  N gateways behind a plain load balancer gives.
- **Throughput**: on four zero-delay engines (one engine process tops out near 1,000 requests/s
  and would cap every worker count), open-loop Poisson arrivals at rising rates, the engines
  called direct (in turn) at the same schedule first; a rate is held by the rule of ``bench gateway``
  (no errors, achieved >= 0.9x offered, p99 added <= 50 ms), and the ladder stops at the first
  rate not held. Rates above what the load generator holds by itself do not count. Every worker
  count, one included, runs on the same Redis and PostgreSQL (what scale-out costs is then the
  same for all); one worker on SQLite without Redis, the single-process default, is the reference.

Targets: KV hit with 4 shared replicas within 0.01 of one replica; independent replicas lose
more (reported); held throughput grows with workers up to the machine's cores (per-core figures).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mercato.bench.gateway import ENGINE_SEQS, WARMUP_REQUESTS, highest_held, rate_row
from mercato.bench.gateway_load import (
    HELD_P99_MS,
    PROFILE,
    Sample,
    client_ceiling,
    load_pool,
    open_loop,
    poisson_arrivals,
)
from mercato.bench.peers import mercato_process
from mercato.bench.routing import FLEETS, SERVED_NAME, cell_metrics, combine
from mercato.gateway.live.config import AccountingConfig, GatewayConfig, PolicyConfig, StateConfig
from mercato.gateway.live.embedded_postgres import embedded_postgres
from mercato.gateway.live.embedded_redis import embedded_redis
from mercato.gateway.live.fleet import EngineFleet
from mercato.workloads import synthetic_dialogues
from mercato.workloads.loadgen import run_load

FLEET = "four"
ENGINES = 4  # zero-delay engines of the throughput runs: one engine process would cap every count
RATES: tuple[int, ...] = (100, 200, 300, 400, 600, 800, 1000, 1500, 2000, 3000, 4000, 6000)
KV_SLACK = 0.01  # KV hit of 4 shared replicas may trail one replica's by at most this


@dataclass(frozen=True)
class Variant:
    """``workers`` gateway processes; ``shared``: they share load and prefix state through Redis."""

    workers: int
    shared: bool = True

    @property
    def name(self) -> str:
        return f"{self.workers} {'shared' if self.shared else 'independent'}" if self.workers > 1 else "1"


@dataclass(frozen=True)
class ReplicaSettings:
    """Sizes of one run; the defaults are the routing bench's (32 coqa dialogues of 6 turns, 16 at once)."""

    workers: tuple[int, ...] = (1, 2, 4)
    workload: str = "coqa"
    dialogues: int = 32
    turns: int = 6
    concurrency: int = 16
    max_num_seqs: int = 8
    max_tokens: int = 64
    speed: float = 1.0
    rates: tuple[int, ...] = RATES
    duration_s: float = 3.0
    seed: int = 0
    repeats: int = 1  # dialogue seeds seed .. seed + repeats - 1; KV rows give the mean and the spread

    def __post_init__(self) -> None:
        if not self.workers or min(self.workers) < 1 or min(self.dialogues, self.turns, self.concurrency,
                                                            self.repeats) < 1:
            raise ValueError("workers, dialogues, turns, concurrency and repeats must be >= 1")
        if not self.rates or min(self.rates) < 1 or self.duration_s <= 0:
            raise ValueError("rates must be non-empty and >= 1, duration_s > 0")

    def quick(self) -> ReplicaSettings:
        """A smoke run: 1 and 2 workers, a few short dialogues, two rates for half a second."""
        return replace(self, workers=(1, 2), dialogues=8, turns=3, concurrency=8, speed=4.0, rates=(50, 100),
                       duration_s=0.5)

    def variants(self) -> list[Variant]:
        """Each worker count shared, then each count above one independent."""
        return ([Variant(n) for n in self.workers]
                + [Variant(n, shared=False) for n in self.workers if n > 1])

    def steps(self) -> int:
        """Progress steps at most: the client ceiling, each variant's KV runs, each ladder's rates."""
        return 1 + len(self.variants()) * self.repeats + (1 + len(self.workers)) * len(self.rates)


def _config(variant: Variant, fleet: EngineFleet, ledger: Path | str, workdir: Path, seed: int,
            capacity: int | None = None, redis_url: str | None = None) -> GatewayConfig:
    """The auction in front of ``fleet``; a PostgreSQL ledger's spool stays in ``workdir``."""
    return GatewayConfig(backends=fleet.backend_configs(capacity=capacity, kv_events=False),
                         policy=PolicyConfig(name="auction", seed=seed),
                         accounting=AccountingConfig(db=ledger, spool=workdir / "spool.sqlite"),
                         state=StateConfig(redis_url=redis_url, share_routing=variant.shared))


def _kv_run(variant: Variant, settings: ReplicaSettings, workdir: Path) -> dict[str, Any]:
    """The variant on a fresh fleet: the routing bench's metrics of the dialogues."""
    dialogues = synthetic_dialogues(settings.workload, settings.dialogues, seed=settings.seed,
                                    turns=settings.turns)
    tag = variant.name.replace(" ", "-")
    with EngineFleet(FLEETS[FLEET], speed=settings.speed, seed=settings.seed,
                     max_num_seqs=settings.max_num_seqs, served_name=SERVED_NAME) as fleet:
        config = _config(variant, fleet, workdir / f"kv-{tag}.sqlite", workdir, settings.seed)
        with mercato_process(config, workdir / f"kv-{tag}.yaml", workers=variant.workers) as (url, _):
            records = asyncio.run(run_load(
                url, dialogues, model=SERVED_NAME, concurrency=settings.concurrency,
                max_tokens=settings.max_tokens, seed=settings.seed, run_id=f"bench-replicas-{tag}"))
        prices = fleet.price_list()
    return cell_metrics(records, prices)


@dataclass
class _Ladders:
    """What every throughput ladder of one run shares: the engine, the generator, its ceiling and the
    engine-direct samples of each rate (measured once, at the first ladder that reaches the rate)."""

    fleet: EngineFleet
    pool: ProcessPoolExecutor
    settings: ReplicaSettings
    ceiling: int
    workdir: Path
    on_step: Callable[[str], None]
    direct: dict[int, Sample] = field(default_factory=dict)

    def measure(self, label: str, config: GatewayConfig, workers: int) -> dict[str, Any]:
        """Open-loop rates through ``workers`` gateways on ``config``, each against the engine direct;
        stops at the first rate not held."""
        rows: list[dict[str, Any]] = []
        pool, seed = self.pool, self.settings.seed
        tag = label.replace(" ", "-").replace(",", "")
        with mercato_process(config, self.workdir / f"rate-{tag}.yaml", workers=workers) as (base, _):
            url = f"{base}/v1/chat/completions"
            pool.submit(open_loop, url, poisson_arrivals(WARMUP_REQUESTS, 1.0, seed)).result()
            for rate in sorted(self.settings.rates):
                if rows and not rows[-1]["held"]:
                    break
                arrivals = poisson_arrivals(rate, self.settings.duration_s, seed)
                if rate not in self.direct:  # the engines direct, each taking every ENGINES-th request
                    engines = [f"{e.url}/chat/completions" for e in self.fleet.engines]
                    self.direct[rate] = pool.submit(open_loop, engines, arrivals).result()
                through = pool.submit(open_loop, url, arrivals).result()
                rows.append(rate_row(rate, self.direct[rate], through, self.ceiling))
                self.on_step(f"{label}: {rate}/s")
        held, lower_bound = highest_held(rows)
        cores = min(workers, os.cpu_count() or 1)
        return {"label": label, "workers": workers, "held_rps": held, "held_rps_is_lower_bound": lower_bound,
                "held_rps_per_core": (held or 0) / cores, "cores": cores, "rates": rows}


def targets(variants: dict[str, dict[str, Any]], throughput: list[dict[str, Any]],
             cpus: int) -> list[dict[str, Any]]:
    """KV hit of the most shared replicas against one; independent replicas' loss; throughput growth."""
    one = variants["1"]
    most = max(v["workers"] for v in variants.values())
    out = []
    if most > 1:
        shared, alone = variants[f"{most} shared"], variants[f"{most} independent"]
        gap = one["kv"]["kv_hit"] - shared["kv"]["kv_hit"]
        out.append({"target": f"kv_hit_{most}_shared_within_{KV_SLACK:g}_of_1", "value": gap,
                    "bound": KV_SLACK, "met": gap <= KV_SLACK,
                    "note": f"1: {one['kv']['kv_hit']:.3f}, {most} shared: {shared['kv']['kv_hit']:.3f}, "
                            f"{most} independent: {alone['kv']['kv_hit']:.3f}"})
        lost = shared["kv"]["kv_hit"] - alone["kv"]["kv_hit"]
        out.append({"target": f"kv_hit_{most}_independent_below_shared", "value": lost, "bound": 0.0,
                    "met": lost > 0.0, "note": f"sharing keeps {lost:+.3f} KV hit"})
    rated = {t["workers"]: t for t in throughput if t["shared_servers"]}
    held = {n: t["held_rps"] or 0 for n, t in rated.items()}
    up_to = [n for n in sorted(held) if n <= cpus]
    grows = all(held[b] > held[a] for a, b in itertools.pairwise(up_to))
    # a count that held every rate tried may hold more: growth is then unknown unless already shown
    unknown = len(up_to) < 2 or (not grows and any(rated[n]["held_rps_is_lower_bound"] for n in up_to))
    out.append({"target": f"held_rps_grows_with_workers_up_to_{cpus}_cores", "value": held, "bound": None,
                "met": None if unknown else grows,
                "note": ", ".join(f"{n} workers: {'>= ' * rated[n]['held_rps_is_lower_bound']}{held[n]} req/s"
                                  for n in sorted(held))})
    return out


def run(settings: ReplicaSettings, on_step: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every variant's KV run, then each shared worker count's throughput ladder; the JSON report."""
    cpus = os.cpu_count() or 1
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mercato-bench-replicas-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o711)  # the embedded PostgreSQL of --workers N runs as nobody when we are root
        runs = []
        for seed in range(settings.seed, settings.seed + settings.repeats):  # seeds outside: drift hits all
            for variant in settings.variants():
                metrics = _kv_run(variant, replace(settings, seed=seed), workdir)
                runs.append({"variant": variant.name, **metrics})
                on_step(f"{variant.name}: dialogues, seed {seed}")
        kv = {row["variant"]: row for row in combine(runs, ("variant",))}
        for variant in settings.variants():
            results[variant.name] = {**asdict(variant), "name": variant.name, "kv": kv[variant.name]}
        with load_pool() as pool, EngineFleet([PROFILE] * ENGINES, speed=0.0, seed=settings.seed,
                                              max_num_seqs=ENGINE_SEQS) as fleet, \
                embedded_redis() as redis, embedded_postgres(workdir / "pg") as postgres:
            client = client_ceiling(pool, settings.rates, settings.duration_s, settings.seed)
            ceiling = max((int(r["rate"]) for r in client if r["held"]), default=0)
            on_step("client ceiling")
            ladders = _Ladders(fleet, pool, settings, ceiling, workdir, on_step)
            seed = settings.seed
            alone = _config(Variant(1), fleet, workdir / "rate-alone.sqlite", workdir, seed, ENGINE_SEQS)
            measured = [{**ladders.measure("1, SQLite, no Redis", alone, 1), "shared_servers": False}]
            for n in settings.workers:  # every count on the same Redis and PostgreSQL, 1 included
                config = _config(Variant(n), fleet, postgres.url, workdir, seed, ENGINE_SEQS, redis.url)
                ladder = ladders.measure(f"{n}, Redis + PostgreSQL", config, n)
                measured.append({**ladder, "shared_servers": True})
    met = targets(results, measured, cpus)
    return {
        "benchmark": "replicas",
        "settings": asdict(settings),
        "fleet": {"kv": f"{FLEET}: {', '.join(FLEETS[FLEET])}, {settings.max_num_seqs} sequences, "
                        f"speed {settings.speed:g}, no KV events",
                  "throughput": f"{ENGINES} x {PROFILE} simulated, speed 0, {ENGINE_SEQS} sequences"},
        "held_rule": f"no errors, achieved >= 0.9x offered, p99 added <= {HELD_P99_MS:g} ms",
        "cpus": cpus,
        "load_average_1m": os.getloadavg()[0],
        "client": {"ceiling_rps": ceiling, "holds_every_rate_tried": all(r["held"] for r in client),
                   "ladder": client},
        "variants": list(results.values()),
        "throughput": measured,
        "targets": met,
        "targets_met": {t["target"]: t["met"] for t in met if t["met"] is not None},
    }
