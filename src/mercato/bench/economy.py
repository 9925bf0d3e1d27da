"""`mercato bench economy`: wall time of one simulation run and of Experiment 1.

Workloads (issue 7): one 200-round run with N = 50 agents, medium load, entangled DAGs (naive
architecture, tâtonnement market), timed as the median of several runs after one warm-up run
(the warm-up builds the run's DAG catalogue, which later runs of that seed reuse); and
Experiment 1 (4 topologies x 3 loads x 10 seeds = 120 runs, with its statistics, no files) on
``workers`` processes. Baseline for scale, measured by us on this machine and recorded in
``economy-reference.md``: the authors' R simulator takes 36-50 s per run and about 40 minutes
for Experiment 1. Targets: one run <= 0.5 s; the whole suite <= 10 minutes on 2 cores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mercato.bench.timing import median_ms
from mercato.economy import EconomyConfig, simulate
from mercato.experiments.economy import experiment1
from mercato.experiments.economy_report import Options

TARGET_RUN_S = 0.5
REFERENCE_RUN_S = (36.0, 50.0)
REFERENCE_EXP1_S = 40 * 60.0


def bench_run(seed: int = 0, repeats: int = 5) -> tuple[float, float]:
    """Median wall seconds and mean CPU seconds of one baseline 200-round run.

    CPU time is reported beside wall time because the machine may be shared: it is what the run
    costs, whatever else is competing for the cores.
    """
    config = EconomyConfig(topology="entangled", arrival_rate=1.0, n_agents=50, rounds=200, seed=seed)
    start = time.process_time()
    wall = median_ms(lambda: simulate(config), repeats=repeats, warmup=1) / 1e3
    return wall, (time.process_time() - start) / (repeats + 1)


def bench_experiment1(seed: int = 0, workers: int = 2, show_progress: bool = True) -> float:
    """Seconds to run Experiment 1 (120 runs) and its statistics on ``workers`` processes."""
    start = time.perf_counter()
    experiment1(Options(seed=seed, workers=workers, out=Path("."), show_progress=show_progress))
    return time.perf_counter() - start


def run(seed: int = 0, workers: int = 2, repeats: int = 5, show_progress: bool = True,
        on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Both timings, the reference's figures and whether the targets are met."""
    one, one_cpu = bench_run(seed, repeats)
    if on_step is not None:
        on_step("run")
    exp1 = bench_experiment1(seed, workers, show_progress)
    if on_step is not None:
        on_step("exp1")
    return {
        "benchmark": "economy",
        "seed": seed,
        "workers": workers,
        "one_run_s": round(one, 4),
        "one_run_cpu_s": round(one_cpu, 4),
        "one_run_config": "entangled, N=50, medium load (lambda=1), 200 rounds, naive market",
        "experiment1_runs": 120,
        "experiment1_s": round(exp1, 2),
        "reference_one_run_s": list(REFERENCE_RUN_S),
        "reference_experiment1_s": REFERENCE_EXP1_S,
        "speedup_one_run": round(REFERENCE_RUN_S[0] / one, 1),
        "speedup_experiment1": round(REFERENCE_EXP1_S / exp1, 1),
        "targets_met": {"one_run_le_0.5s": one <= TARGET_RUN_S},
    }
