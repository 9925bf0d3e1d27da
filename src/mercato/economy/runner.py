"""Run many simulations in parallel processes, with a progress bar on stderr.

Runs are independent, so they spread over a process pool (``workers`` processes; 1 runs in this
process, which tests use). Only the metrics dict travels back, not the per-round series. Workers
are forked, so mechanisms registered at import time in this process exist in them too, and so do
the DAG catalogues, which are therefore built here once before the pool starts.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

from mercato.economy.config import EconomyConfig
from mercato.economy.dags import catalogue
from mercato.economy.simulator import simulate
from mercato.reporting import progress


def run_metrics(config: EconomyConfig) -> dict[str, float]:
    """Metrics of one run (the unit of work sent to a worker)."""
    return simulate(config).metrics


def run_many(configs: Sequence[EconomyConfig], workers: int = 2, label: str = "runs",
             show_progress: bool = True) -> list[dict[str, float]]:
    """Metrics of every configuration, in the order given."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    results: list[dict[str, float] | None] = [None] * len(configs)
    with progress() as bar:
        task = bar.add_task(label, total=len(configs), visible=show_progress)
        if workers == 1 or len(configs) <= 1:
            for i, config in enumerate(configs):
                results[i] = run_metrics(config)
                bar.advance(task)
        else:
            for c in configs:
                p = c.params
                catalogue(c.topology, c.seed, p.catalogue_size, p.capacities, p.base_delays_ms)
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = {pool.submit(run_metrics, c): i for i, c in enumerate(configs)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.advance(task)
    return [r for r in results if r is not None]
