"""A physical TTFT model per backend: non-negative rates, so more load never predicts less latency.

An engine's time to first token is the prefill of the uncached prompt, after the prefill work
already queued at it, slowed by the decodes running beside it (chunked prefill shares steps):

    TTFT ~ t0 + s * u + b * W + q * n,     t0, s, b, q >= 0

with ``u`` the uncached prompt in k-tokens, ``W`` the seconds the backend's prefill clock said
the request would wait (:mod:`mercato.gateway.core.load`; ``b`` is 1 when the clock is right)
and ``n`` the requests in flight there. ``s`` is also the clock's rate: a dispatched request
moves its backend's clock on by ``s * u``. The coefficients are fitted by non-negative least
squares on exponentially forgotten sufficient statistics, shrunk towards a prior. The sign
constraints matter: a free fit learns from a dialogue workload that load *lowers* TTFT (late
turns arrive when load is high and are mostly cached), and a router that believes that piles
requests onto busy backends.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import nnls

# Prior (seconds): 20 ms idle, 100 ms per uncached k-token, the clock's wait taken at face value,
# 3 ms per request in flight. The ridge that holds the fit to it is weak (a few observations
# outweigh it), so that it only decides directions no data has excited.
LATENCY_PRIOR = np.array([0.02, 0.1, 1.0, 0.003])
RIDGE = 1e-3
FORGET = 0.995  # about the last 200 requests count


def latency_terms(uncached_ktok: NDArray[np.float64], wait_s: NDArray[np.float64],
                  inflight: NDArray[np.float64]) -> NDArray[np.float64]:
    """The model's regressors ``(1, u, W, n)`` stacked on a new last axis."""
    return np.stack([np.ones_like(uncached_ktok), uncached_ktok, wait_s, inflight], axis=-1)


def predict_ttft(theta: NDArray[np.float64], uncached_ktok: NDArray[np.float64], wait_s: NDArray[np.float64],
                 inflight: NDArray[np.float64]) -> NDArray[np.float64]:
    """(N, M) predicted TTFT from per-backend coefficients ``theta`` (M, 4) and (N, M) regressors."""
    return theta[:, 0] + theta[:, 1] * uncached_ktok + theta[:, 2] * wait_s + theta[:, 3] * inflight


class QueueingLatencyModel:
    """Online non-negative least squares of TTFT on :func:`latency_terms`."""

    def __init__(self) -> None:
        k = len(LATENCY_PRIOR)
        self._gram = np.zeros((k, k))
        self._moment = np.zeros(k)
        self._theta = LATENCY_PRIOR.copy()
        self._stale = False

    def learn(self, uncached_ktok: float, wait_s: float, inflight: float, ttft_s: float) -> None:
        """Add one observed TTFT (seconds) at the load and uncached prompt it met."""
        z = latency_terms(np.array(uncached_ktok), np.array(wait_s), np.array(inflight))
        self._gram = FORGET * self._gram + np.outer(z, z)
        self._moment = FORGET * self._moment + z * ttft_s
        self._stale = True

    @property
    def theta(self) -> NDArray[np.float64]:
        """Current non-negative coefficients ``(t0, s, b, q)``."""
        if self._stale:
            gram = self._gram + RIDGE * np.eye(len(LATENCY_PRIOR))
            moment = self._moment + RIDGE * LATENCY_PRIOR
            chol = np.linalg.cholesky(gram)
            self._theta, _ = nnls(chol.T, np.linalg.solve(chol, moment))
            self._stale = False
        return self._theta
