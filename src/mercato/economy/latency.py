"""The two latency models of the economy: what bidders expect, and what execution delivers.

Table S3 makes them differ on purpose (information asymmetry): bidders use a power-law
congestion estimate ``L^ = L_base + alpha * rho^p`` while each tier executes as a capped M/M/1
queue ``L_r = L_base,r + min(lambda * rho_r / (1 - rho_r) * 2, 500)``, ``rho_r = min(0.99, load /
capacity)``, with the task's end-to-end latency drawn around its critical path with a 10%
coefficient of variation.

Choices where the paper is silent (reference semantics, adapted to per-task DAGs):

* ``lambda`` in the queueing term is the per-agent arrival rate of the load level (0.5 / 1 / 1.5);
  with it the model gives the paper's low-load latencies (linear ~126 ms, tree ~136 ms).
* The bid-side ``L_base`` is the task's own critical path at base delays (the authors' code fell
  back to 50 ms for every task, a bug), and ``rho`` is the *task's* exposure to congestion: last
  round's offered utilisation of each tier, capped at 1, averaged with the task's bundle as
  weights, so a device-heavy task expects the device tier's congestion.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mercato.economy.config import Parameters


def bid_latency(base_cp: NDArray[np.float64], bundles: NDArray[np.int64],
                offered_utilisation: NDArray[np.float64], params: Parameters) -> NDArray[np.float64]:
    """Each task's latency estimate L^ used in its bid (ms)."""
    rho = np.minimum(offered_utilisation, 1.0)
    exposure = (bundles @ rho) / np.maximum(bundles.sum(axis=1), 1)
    return base_cp + params.bid_alpha_ms * exposure ** params.bid_power


def tier_latency(load: NDArray[np.float64], capacity: NDArray[np.float64], arrival_rate: float,
                 params: Parameters) -> NDArray[np.float64]:
    """Per-tier execution latency (ms) for ``load`` capacity units on a pool of ``capacity``."""
    rho = np.minimum(params.rho_cap, load / capacity)
    queue = np.minimum(params.queue_cap_ms, arrival_rate * rho / (1.0 - rho) * params.queue_factor)
    return np.asarray(params.base_delays_ms) + queue


def realised_latency(critical_path: NDArray[np.float64], noise: NDArray[np.float64],
                     params: Parameters) -> NDArray[np.float64]:
    """End-to-end latency ~ N(CP, (cv * CP)^2) from standard-normal ``noise``, never negative."""
    return np.maximum(critical_path * (1.0 + params.latency_cv * noise), 0.0)
