"""`mercato bench routing-state`: routing on exact cache state (KV events) against the prefix ledger.

Each cell is one router (mercato's auction or cache_aware) on a fresh fleet of simulated engines
that publish their KV events, with one of two cache states:

- ``approximate``: the gateway ignores the events and guesses each backend's cache from what it
  sent (the prefix ledger, corrected when ``cached_tokens`` disappoint);
- ``exact``: the gateway follows every engine's events (``kv_events`` in each backend's config).

Two scenarios: ``default`` is :mod:`mercato.bench.routing`'s setting (the engines' own KV pools,
6-turn dialogues: little is ever evicted); ``pressure`` gives every engine a small pool
(``pressure_blocks`` blocks of 16 tokens) and 10-turn dialogues, so the fleet cannot hold every
dialogue and evictions decide where a turn still hits. Metrics are bench routing's
(:func:`~mercato.bench.routing.cell_metrics`: KV hit from the engines' usage, client-side TTFT).
Target: under pressure, exact state raises the auction's KV hit by >= 0.03 over the ledger.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mercato.bench import routing
from mercato.bench.routing import FLEETS, RoutingSettings, combine
from mercato.engine.kv_cache import BLOCK_TOKENS

SCENARIOS: tuple[str, ...] = ("default", "pressure")
STATES: tuple[str, ...] = ("approximate", "exact")
ROUTERS: tuple[str, ...] = ("auction", "cache_aware")
METRICS: tuple[str, ...] = ("kv_hit", "ttft_p50_ms", "ttft_p95_ms", "mean_cost")
KV_GAIN_TARGET = 0.03


@dataclass(frozen=True)
class StateSettings:
    """Sizes of one run; the workload and arrivals are bench routing's."""

    fleet: str = "four"
    workload: str = "quac"
    arrival: str = "burst"
    dialogues: int = 32
    concurrency: int = 16
    turns: int = 6
    pressure_turns: int = 10
    pressure_blocks: int = 256
    max_num_seqs: int = 8
    max_tokens: int = 64
    speed: float = 1.0
    seed: int = 0
    repeats: int = 1
    scenarios: tuple[str, ...] = SCENARIOS
    routers: tuple[str, ...] = ROUTERS

    def __post_init__(self) -> None:
        if self.fleet not in FLEETS:
            raise ValueError(f"unknown fleet {self.fleet!r}; choose from {', '.join(FLEETS)}")
        for name, chosen, known in (("scenario", self.scenarios, SCENARIOS),
                                    ("router", self.routers, ROUTERS)):
            if not chosen or any(c not in known for c in chosen):
                raise ValueError(f"unknown or no {name} in {chosen}; choose from {', '.join(known)}")
        if min(self.dialogues, self.concurrency, self.turns, self.pressure_turns, self.pressure_blocks,
               self.max_num_seqs, self.max_tokens, self.repeats) < 1 or self.speed <= 0:
            raise ValueError("sizes must be >= 1 and speed > 0")

    @classmethod
    def smoke(cls, seed: int = 0, repeats: int = 1) -> StateSettings:
        """8 dialogues, 4 at a time, 3 turns (4 under pressure on 96-block pools): a smoke run."""
        return cls(seed=seed, repeats=repeats, dialogues=8, concurrency=4, turns=3, pressure_turns=4,
                   pressure_blocks=96)

    def cells(self) -> int:
        """Runs in one report."""
        return self.repeats * len(self.scenarios) * len(self.routers) * len(STATES)


def run_cell(settings: StateSettings, scenario: str, router: str, state: str,
             workdir: Path) -> dict[str, Any]:
    """One router with one cache state on a fresh fleet that publishes its KV events: bench routing's
    cell, keyed by scenario and state."""
    pressure = scenario == "pressure"
    work = RoutingSettings(fleets=(settings.fleet,), workloads=(settings.workload,),
                           arrivals=(settings.arrival,), dialogues=settings.dialogues,
                           turns=settings.pressure_turns if pressure else settings.turns,
                           concurrency=settings.concurrency, max_num_seqs=settings.max_num_seqs,
                           max_tokens=settings.max_tokens, speed=settings.speed, seed=settings.seed)
    blocks = settings.pressure_blocks if pressure else None
    engines = {"num_gpu_blocks": blocks, "max_model_len": blocks * BLOCK_TOKENS if blocks else None,
               "kv_events": True}
    row = routing.run_cell(work, settings.fleet, settings.workload, settings.arrival, f"mercato:{router}",
                           workdir, engines=engines, kv_events=state == "exact")
    return row | {"scenario": scenario, "router": router, "state": state}


def combine_states(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (scenario, router, state): metrics averaged over seeds, with min and max."""
    return combine(runs, ("scenario", "router", "state"), METRICS)


def gains(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario and router: exact minus approximate, for every metric."""
    out = []
    by_key = {(r["scenario"], r["router"], r["state"]): r for r in rows}
    for (scenario, router, state), exact in by_key.items():
        approx = by_key.get((scenario, router, "approximate"))
        if state != "exact" or approx is None:
            continue
        out.append({"scenario": scenario, "router": router,
                    **{m: (exact[m] - approx[m]) if None not in (exact[m], approx[m]) else None
                       for m in METRICS}})
    return out


def run(settings: StateSettings, on_cell: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every scenario x router x state, once per seed; the JSON-ready report."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="mercato-bench-state-") as tmp:
        for repeat in range(settings.repeats):
            seeded = replace(settings, seed=settings.seed + repeat)
            for scenario in settings.scenarios:
                for router in settings.routers:
                    for state in STATES:
                        row = run_cell(seeded, scenario, router, state, Path(tmp))
                        runs.append(row)
                        if on_cell is not None:
                            on_cell(row)
    rows = combine_states(runs)
    delta = gains(rows)
    auction = [g for g in delta if g["scenario"] == "pressure" and g["router"] == "auction"]
    gain = auction[0]["kv_hit"] if auction else None
    met = {"auction kv_hit +0.03 under pressure": gain is not None and gain >= KV_GAIN_TARGET}
    return {"benchmark": "routing-state", "settings": vars(settings), "runs": runs, "rows": rows,
            "gains": delta, "targets_met": met}
