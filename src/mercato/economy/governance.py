"""Governance: capacity partitioned into pools, and the rule that sends each task to one (or none).

Paper 003 models governance as coordinate-wise capacity bounds; the simulation realises them as
capacity partitions with their own markets (reference semantics, as the paper's text is brief):

* ``none``: one pool with all capacity;
* ``moderate``: a *compliant* pool with 50% of every tier serves the sensitive tasks (30% of
  tasks), a *general* pool with the other 50% serves the rest;
* ``strict``: the compliant pool gets 70% and admits only sensitive tasks of agents whose trust
  is at least 0.75; sensitive tasks of less trusted agents are rejected outright (a governance
  violation is a hard rejection); the general pool keeps 30% for the other tasks.

Each pool has its own prices, its own queues (partitioned capacity does not share a queue) and
its own mechanism instance, so a small pool can saturate while a large one idles: the source of
the governance-induced volatility the paper reports.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mercato.economy.config import Parameters

REJECTED = -1


def pool_shares(governance: str, params: Parameters) -> tuple[tuple[str, float], ...]:
    """(pool name, share of every tier's capacity) for a governance regime."""
    if governance == "none":
        return (("all", 1.0),)
    if governance == "moderate":
        return (("compliant", params.moderate_split), ("general", 1.0 - params.moderate_split))
    if governance == "strict":
        return (("compliant", params.strict_split), ("general", 1.0 - params.strict_split))
    raise ValueError(f"unknown governance {governance!r}; choose none, moderate or strict")


def route(governance: str, sensitive: NDArray[np.bool_], trust: NDArray[np.float64],
          params: Parameters) -> NDArray[np.int64]:
    """Pool index of each task (its position in :func:`pool_shares`), or ``REJECTED``.

    ``trust`` is the task's agent's trust at the start of the round.
    """
    if governance == "none":
        return np.zeros(sensitive.size, dtype=np.int64)
    pool = np.where(sensitive, 0, 1).astype(np.int64)
    if governance == "strict":
        pool[sensitive & (trust < params.trust_gate)] = REJECTED
    return pool

