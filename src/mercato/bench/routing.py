"""`mercato bench routing`: mercato's routers against the real sglang-router, on the same live work.

Every cell is one workload on one fleet with one arrival pattern. Each router gets a fresh fleet
of simulated engines (same profiles, same seeds, one served model name), the same seeded
dialogues, and the same load generator; the bench starts and stops the router itself. Metrics
come from what the client saw and what the engines reported, computed alike for every router:

- KV hit: mean of cached / prompt tokens per request (the engines' usage);
- TTFT p50 / p95: from just before the request is sent to the first content chunk; the p95 also
  apart for the dialogues' first turns (cold prompts) and their later turns (mostly cached);
- mean cost: IEMAS Eq. 6 at the serving engine's list prices (each engine names itself in
  ``system_fingerprint``), so any router's traffic is priced the same way; beside it the floor
  (``cheapest_cost``), each request's very tokens priced at the engine that would charge them
  least: no router that caches as well does better;
- accuracy: replies scored against the gold answers (the engines read them from OpenAI's
  standard ``metadata``, which every router forwards);
- welfare: the buyers' realised value (bid 1, delta 0.5, mercato's valuation scales) minus cost.

Targets (per cell, the auction against sglang-router's cache_aware, or mercato's own
cache_aware when the peer is not installed): KV hit >= the peer's - 0.005, TTFT p50 and p95 <=
the peer's, mean cost <= 0.8 x the peer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mercato.bench.peers import SGLANG_POLICIES, mercato_router, sglang_available, sglang_router
from mercato.experiments.demo import FLEET as DEMO_FLEET
from mercato.gateway.core.valuation import ValuationSettings, realised_value
from mercato.gateway.live.fleet import EngineFleet
from mercato.workloads import Dialogue, synthetic_dialogues
from mercato.workloads.loadgen import RequestRecord, run_load, summarize
from mercato.workloads.synthetic import MAX_HOTPOTQA_TURNS

FLEETS: dict[str, tuple[str, ...]] = {
    "four": ("qwen3-4b", "qwen3-4b", "qwen3-8b", "llama3-8b"),
    "demo": DEMO_FLEET,
}
WORKLOADS: tuple[str, ...] = ("coqa", "quac", "hotpotqa")
ARRIVALS: tuple[str, ...] = ("burst", "poisson")
MERCATO_POLICIES: tuple[str, ...] = ("auction", "cache_aware", "round_robin")
SERVED_NAME = "fleet"
METRICS: tuple[str, ...] = ("kv_hit", "ttft_p50_ms", "ttft_p95_ms", "first_p95_ms", "later_p95_ms",
                            "mean_cost", "cheapest_cost", "accuracy", "welfare")
KV_SLACK = 0.005
COST_RATIO = 0.8


@dataclass(frozen=True)
class RoutingSettings:
    """Sizes of one bench run; the defaults are the issue's setting (32 dialogues, 16 at a time)."""

    fleets: tuple[str, ...] = tuple(FLEETS)
    workloads: tuple[str, ...] = WORKLOADS
    arrivals: tuple[str, ...] = ARRIVALS
    dialogues: int = 32
    turns: int = 6
    concurrency: int = 16
    poisson_rate: float = 4.0  # dialogues per second
    max_num_seqs: int = 8
    max_tokens: int = 64
    speed: float = 1.0
    seed: int = 0
    repeats: int = 1  # seeds seed .. seed + repeats - 1; cells report the mean and the spread
    peers: bool = True

    def __post_init__(self) -> None:
        for name, chosen, known in (("fleet", self.fleets, FLEETS), ("workload", self.workloads, WORKLOADS),
                                    ("arrival", self.arrivals, ARRIVALS)):
            unknown = [c for c in chosen if c not in known]
            if unknown or not chosen:
                raise ValueError(f"unknown or no {name} {unknown}; choose from {', '.join(known)}")
        if min(self.dialogues, self.turns, self.concurrency, self.max_num_seqs, self.max_tokens,
               self.repeats) < 1:
            raise ValueError("dialogues, turns, concurrency, max_num_seqs, max_tokens and repeats "
                             "must be >= 1")
        if self.speed <= 0 or self.poisson_rate <= 0:
            raise ValueError("speed and poisson_rate must be > 0")

    def routers(self) -> list[str]:
        """Router labels in report order: ``mercato:<policy>`` then ``sglang:<policy>``."""
        peers = [f"sglang:{p}" for p in SGLANG_POLICIES] if self.peers and sglang_available() else []
        return [f"mercato:{p}" for p in MERCATO_POLICIES] + peers


def workload_dialogues(workload: str, settings: RoutingSettings) -> list[Dialogue]:
    """The cell's seeded dialogues (HotpotQA dialogues have at most five turns)."""
    turns = min(settings.turns, MAX_HOTPOTQA_TURNS) if workload == "hotpotqa" else settings.turns
    return synthetic_dialogues(workload, settings.dialogues, seed=settings.seed, turns=turns)


def cell_metrics(records: Sequence[RequestRecord], prices: dict[str, tuple[float, float, float]],
                 valuation: ValuationSettings | None = None) -> dict[str, Any]:
    """The bench's metrics of one router's records, priced at the serving engines' list prices."""
    valuation = valuation or ValuationSettings()
    load = summarize(records)
    costs, floors, welfare = [], [], 0.0
    for r in records:
        if r.error is not None or r.served_by not in prices or r.prompt_tokens is None:
            continue
        cost = _priced(prices[r.served_by], r)
        costs.append(cost)
        # the cost floor of these very tokens: each request at the engine that would charge it least
        floors.append(min(_priced(p, r) for p in prices.values()))
        welfare += realised_value(1.0, 0.5, r.correct, (r.ttft_ms or 0.0) / 1e3, valuation, 0.5) - cost
    return {"requests": load["requests"], "errors": load["errors"], "kv_hit": load["kv_hit_rate"],
            "ttft_p50_ms": load["ttft_p50_ms"], "ttft_p95_ms": load["ttft_p95_ms"],
            # the tail apart for the dialogues' first turns (cold prompts) and their later turns
            "first_p95_ms": summarize([r for r in records if r.turn == 1])["ttft_p95_ms"],
            "later_p95_ms": summarize([r for r in records if r.turn != 1])["ttft_p95_ms"],
            "mean_cost": float(np.mean(costs)) if costs else None,
            "cheapest_cost": float(np.mean(floors)) if floors else None, "accuracy": load["accuracy"],
            "welfare": welfare, "priced": len(costs)}


def _priced(price: tuple[float, float, float], r: RequestRecord) -> float:
    """IEMAS Eq. 6 of one served record at (input, cached input, output) prices per token."""
    cached = r.cached_tokens or 0
    uncached = (r.prompt_tokens or 0) - cached
    return price[0] * uncached + price[1] * cached + price[2] * (r.completion_tokens or 0)


@contextlib.contextmanager
def _router(label: str, fleet: EngineFleet, ledger: Path, seed: int, kv_events: bool) -> Iterator[str]:
    kind, policy = label.split(":")
    if kind == "mercato":
        with mercato_router(fleet, policy, ledger, seed, kv_events=kv_events) as url:
            yield url
    else:
        with sglang_router(fleet, policy) as url:
            yield url


def run_cell(settings: RoutingSettings, fleet_name: str, workload: str, arrival: str, router: str,
             workdir: Path, *, engines: Mapping[str, Any] | None = None,
             kv_events: bool = False) -> dict[str, Any]:
    """One router on a fresh fleet: the cell's metrics.

    ``engines``: more :class:`EngineFleet` options (small KV pools, engines that publish KV
    events); ``kv_events``: mercato's gateway follows the events of engines that publish them.
    """
    dialogues = workload_dialogues(workload, settings)
    with EngineFleet(FLEETS[fleet_name], speed=settings.speed, seed=settings.seed,
                     max_num_seqs=settings.max_num_seqs, served_name=SERVED_NAME, **(engines or {})) as fleet:
        ledger = workdir / f"ledger-{router.replace(':', '-')}.sqlite"
        with _router(router, fleet, ledger, settings.seed, kv_events) as url:
            records = asyncio.run(run_load(
                url, dialogues, model=SERVED_NAME, concurrency=settings.concurrency,
                poisson_rate=settings.poisson_rate if arrival == "poisson" else None,
                max_tokens=settings.max_tokens, seed=settings.seed, run_id=f"bench-{router}"))
        prices = fleet.price_list()
    return {"fleet": fleet_name, "workload": workload, "arrival": arrival, "router": router,
            "seed": settings.seed, **cell_metrics(records, prices)}


CELL_KEYS: tuple[str, ...] = ("fleet", "workload", "arrival", "router")


def combine(runs: Sequence[dict[str, Any]], keys: Sequence[str] = CELL_KEYS,
            metrics: Sequence[str] = METRICS) -> list[dict[str, Any]]:
    """One row per value of ``keys`` (cell and router): ``metrics`` averaged over seeds, with min and max."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row |= {"seeds": len(rs), "requests": sum(r["requests"] for r in rs),
                "errors": sum(r["errors"] for r in rs)}
        for metric in metrics:
            values = [r[metric] for r in rs if r.get(metric) is not None]
            row[metric] = float(np.mean(values)) if values else None
            row[f"{metric}_lo"] = min(values) if values else None
            row[f"{metric}_hi"] = max(values) if values else None
        out.append(row)
    return out


def targets(rows: Sequence[dict[str, Any]], peer_name: str | None = None) -> list[dict[str, Any]]:
    """Per cell: the auction against a cache-aware router, and which targets hold.

    ``peer_name`` None: the strongest present (sglang-router's, else mercato's own rule). With
    ``mercato:cache_aware`` both routers share mercato's request path, so the comparison isolates
    the routing decisions from the gateway's own latency.
    """
    out = []
    cells = sorted({(r["fleet"], r["workload"], r["arrival"]) for r in rows})
    for cell in cells:
        here = {r["router"]: r for r in rows if (r["fleet"], r["workload"], r["arrival"]) == cell}
        ours = here.get("mercato:auction")
        name = peer_name or ("sglang:cache_aware" if "sglang:cache_aware" in here else "mercato:cache_aware")
        peer = here.get(name)
        if ours is None or peer is None or None in (ours["kv_hit"], peer["kv_hit"], ours["mean_cost"],
                                                    peer["mean_cost"]):
            continue
        checks = {
            "kv_hit": ours["kv_hit"] >= peer["kv_hit"] - KV_SLACK,
            "ttft_p50": ours["ttft_p50_ms"] <= peer["ttft_p50_ms"],
            "ttft_p95": ours["ttft_p95_ms"] <= peer["ttft_p95_ms"],
            "cost": ours["mean_cost"] <= COST_RATIO * peer["mean_cost"],
        }
        floor = peer.get("cheapest_cost")
        floor_ratio = floor / peer["mean_cost"] if floor and peer["mean_cost"] else None
        out.append({"fleet": cell[0], "workload": cell[1], "arrival": cell[2], "peer": name, **checks,
                    "all": all(checks.values()),
                    "cost_ratio": ours["mean_cost"] / peer["mean_cost"] if peer["mean_cost"] else None,
                    "floor_ratio": floor_ratio,
                    # False: no router caching as well as the peer can meet the cost target here
                    "cost_reachable": floor_ratio is None or floor_ratio <= COST_RATIO})
    return out


def run(settings: RoutingSettings, out: Path | None = None,
        on_cell: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every fleet x workload x arrival x router, once per seed; the JSON-ready report.

    ``runs`` holds one row per seed; ``rows`` the per-cell means (with ``_lo`` / ``_hi``) on which
    the targets are judged.
    """
    routers = settings.routers()
    runs = []
    with tempfile.TemporaryDirectory(prefix="mercato-bench-routing-") as tmp:
        for repeat in range(settings.repeats):
            seeded = replace(settings, seed=settings.seed + repeat)
            for fleet_name in settings.fleets:
                for workload in settings.workloads:
                    for arrival in settings.arrivals:
                        for router in routers:
                            row = run_cell(seeded, fleet_name, workload, arrival, router, Path(tmp))
                            runs.append(row)
                            if on_cell is not None:
                                on_cell(row)
    rows = combine(runs)
    checked = targets(rows)
    return {"benchmark": "routing", "settings": {k: v for k, v in vars(settings).items()},
            "routers": routers, "peers_installed": sglang_available(), "runs": runs, "rows": rows,
            "targets": checked, "same_gateway": targets(rows, "mercato:cache_aware"),
            "targets_met": {"every_cell": bool(checked) and all(t["all"] for t in checked)},
            "out": str(out) if out else None}
