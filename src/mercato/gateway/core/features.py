"""Per-(request, backend) feature tensor of a micro-batch (IEMAS Eq. 5), all numeric.

Numeric quantities stay numeric (the IEMAS reference code one-hot encoded them, so its trees
could not learn that latency grows with prompt length or load); only the domain, a true
category, is one-hot. Units are chosen so that every column is O(1).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

DOMAINS: tuple[str, ...] = ("coqa", "quac", "hotpotqa")
NAMES: tuple[str, ...] = (
    "prompt_ktok",      # prompt tokens / 1000
    "uncached_ktok",    # prompt tokens not covered by the ledger's prefix / 1000
    "affinity",         # lcp / prompt length, IEMAS Eq. 4
    "turn",             # 1-based turn within the session
    "max_htok",         # requested max tokens / 100
    "router_inflight",  # requests in flight at the hub
    "router_rate",      # hub arrivals per second over the last second
    "backend_inflight",
    "backend_rate",
    "capacity",
    "utilisation",      # backend in-flight / capacity
    *(f"domain_{d}" for d in DOMAINS),
    "backend_wait_s",   # seconds until the backend's prefill queue drains (its prefill clock)
)
N_FEATURES = len(NAMES)
TREE_FEATURES = N_FEATURES - 1  # the trees see every column but the wait, which feeds the queueing model
UNCACHED = NAMES.index("uncached_ktok")
INFLIGHT = NAMES.index("backend_inflight")
CAPACITY = NAMES.index("capacity")
WAIT = NAMES.index("backend_wait_s")
# What a request's correctness can depend on: the request, not the backend's load or cache (the
# model is the quality tree's own). Quality is then scored once per (request, model).
QUALITY_FEATURES: tuple[int, ...] = (NAMES.index("prompt_ktok"), NAMES.index("turn"), NAMES.index("max_htok"),
                                     *(NAMES.index(f"domain_{d}") for d in DOMAINS))
_DOMAIN_INDEX: dict[str | None, int] = {d: i for i, d in enumerate(DOMAINS)}
_ONE_HOT = np.eye(len(DOMAINS) + 1)[:, :len(DOMAINS)]  # row domain_index(d); unknown domains all zero


def domain_index(domain: str | None) -> int:
    """Position of ``domain`` in DOMAINS; unknown or missing domains share the last index."""
    return _DOMAIN_INDEX.get(domain, len(DOMAINS))


def batch_features(prompt_tokens: NDArray[np.float64], turns: NDArray[np.float64],
                   max_tokens: NDArray[np.float64], domains: NDArray[np.int64],
                   affinity: NDArray[np.float64], router_inflight: float, router_rate: float,
                   backend_inflight: NDArray[np.float64], backend_rate: NDArray[np.float64],
                   capacity: NDArray[np.float64],
                   backend_wait_s: NDArray[np.float64]) -> NDArray[np.float64]:
    """(N, M, F) features; request quantities have shape (N,), backend ones (M,), affinity (N, M).

    ``domains`` holds each request's :func:`domain_index`.
    """
    n, m = affinity.shape
    x = np.empty((n, m, N_FEATURES))
    x[:, :, 0] = (prompt_tokens / 1000.0)[:, None]
    x[:, :, 1] = x[:, :, 0] * (1.0 - affinity)
    x[:, :, 2] = affinity
    x[:, :, 3] = turns[:, None]
    x[:, :, 4] = (max_tokens / 100.0)[:, None]
    x[:, :, 5] = router_inflight
    x[:, :, 6] = router_rate
    x[:, :, 7] = backend_inflight[None, :]
    x[:, :, 8] = backend_rate[None, :]
    x[:, :, 9] = capacity[None, :]
    x[:, :, 10] = (backend_inflight / np.maximum(capacity, 1.0))[None, :]
    x[:, :, 11:WAIT] = _ONE_HOT[domains][:, None, :]
    x[:, :, WAIT] = backend_wait_s[None, :]
    return x
