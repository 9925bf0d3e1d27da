"""One micro-batch as a market: where each request may go, at what predicted value and cost.

The market builder turns a batch and the router's state (cache affinity, load, predictors) into
the :class:`BatchContext` every policy decides on, plus the feature tensor the predictors learn
from once the requests finish. Benchmarks and experiments build markets through
:meth:`mercato.gateway.core.router.Router.market`, never through the router's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from mercato.gateway.core.affinity import AffinitySource
from mercato.gateway.core.features import batch_features, domain_index
from mercato.gateway.core.load import BackendLoad
from mercato.gateway.core.predictors import Predictions
from mercato.gateway.core.types import BackendSpec, RouteRequest
from mercato.gateway.core.valuation import ValuationSettings, buyer_values


@dataclass
class BatchContext:
    """What every policy sees for one micro-batch; arrays are (N, M) unless noted."""

    requests: list[RouteRequest]
    backends: list[BackendSpec]
    allowed: NDArray[np.bool_]
    capacity: NDArray[np.int64]         # (M,) slots offered to this batch
    inflight: NDArray[np.float64]       # (M,) requests already running or queued
    affinity: NDArray[np.float64]
    predictions: Predictions
    values: NDArray[np.float64]
    costs: NDArray[np.float64]
    rng: np.random.Generator
    # (N, M, S): value request i loses in the k-th slot a backend fills this round (its own
    # extra queueing, at its reported latency weight); None when congestion is not priced.
    slot_penalty: NDArray[np.float64] | None = None

    @property
    def welfare(self) -> NDArray[np.float64]:
        """Predicted welfare of each pair; NaN where the pair is not allowed."""
        return np.where(self.allowed, self.values - self.costs, np.nan)


@dataclass(frozen=True)
class Market:
    """A built market: the policies' context and the (N, M, F) features behind its predictions."""

    context: BatchContext
    features: NDArray[np.float64]


class Predictor(Protocol):
    """What the market needs from the predictors: QoS estimates for every (request, backend) pair."""

    def predict(self, x: NDArray[np.float64], domain_index: NDArray[np.int64]) -> Predictions:
        """Latency, cost and quality for an (N, M, F) feature tensor."""
        ...

    def load_slope(self, x: NDArray[np.float64], latency_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """Extra TTFT (s) per further request in flight, for every pair."""
        ...


class MarketBuilder:
    """Builds each batch's market from the router's cache affinity, load and predictors."""

    def __init__(self, backends: list[BackendSpec], load: BackendLoad, prefix: AffinitySource,
                 predictor: Predictor, valuation: ValuationSettings, rng: np.random.Generator,
                 congestion: bool = True) -> None:
        self.backends = backends
        self.load = load
        self.prefix = prefix
        self.predictor = predictor
        self.valuation = valuation
        self.rng = rng
        self.congestion = congestion
        models = np.array([b.model for b in backends])
        self._serves = {name: models == name for name in set(models.tolist())}
        self._capacity = load.capacity.astype(np.float64)

    def can_serve(self, request: RouteRequest) -> NDArray[np.bool_]:
        """(M,) mask of healthy backends serving the model the request asked for."""
        healthy = self.load.healthy
        if request.any_model:
            return healthy
        serves = self._serves.get(request.model)
        return healthy & serves if serves is not None else np.zeros_like(healthy)

    def build(self, batch: list[RouteRequest], now: float) -> Market:
        """Affinity, features, predictions, values, eligibility and offered slots for ``batch``.

        ``now`` reads the backends' prefill clocks (the wait a request sent now would meet).
        """
        n, m = len(batch), len(self.backends)
        load = self.load
        affinity = np.zeros((n, m))
        for i, r in enumerate(batch):
            self.prefix.affinity_row(r, affinity[i])
        domains = np.array([domain_index(r.domain) for r in batch], dtype=np.int64)
        busy = load.busy()
        x = batch_features(
            prompt_tokens=np.array([r.prompt_tokens for r in batch], dtype=np.float64),
            turns=np.array([r.turn for r in batch], dtype=np.float64),
            max_tokens=np.array([r.max_tokens for r in batch], dtype=np.float64),
            domains=domains,
            affinity=affinity,
            router_inflight=float(busy.sum()),
            router_rate=load.router_rate,
            backend_inflight=busy,
            backend_rate=load.backend_rates(),
            capacity=self._capacity,
            backend_wait_s=load.prefill_wait(now),
        )
        pred = self.predictor.predict(x, domains)
        bids = np.array([r.report.bid for r in batch], dtype=np.float64)
        deltas = np.array([r.report.delta for r in batch], dtype=np.float64)
        values = buyer_values(bids, deltas, pred.quality, pred.latency_s, self.valuation)
        allowed = np.empty((n, m), dtype=bool)
        models = [r.model for r in batch]
        for model in set(models):  # one mask per model asked for, shared by its requests
            rows = [i for i, name in enumerate(models) if name == model]
            allowed[rows] = self.can_serve(batch[rows[0]])
        deadlines = np.array([r.report.deadline_ms or np.inf for r in batch])
        allowed &= pred.latency_s * 1000.0 <= deadlines[:, None]
        capacity = load.offered_capacity(n)
        penalty = None
        if self.congestion and n > 1:
            weight = bids * (1.0 - deltas) * self.valuation.latency_penalty_per_s  # credits per second
            ranks = np.arange(max(min(int(capacity.max(initial=0)), n), 1), dtype=np.float64)
            slope = self.predictor.load_slope(x, pred.latency_s)
            penalty = weight[:, None, None] * slope[:, :, None] * ranks[None, None, :]
        ctx = BatchContext(batch, self.backends, allowed, capacity, busy.copy(),
                           affinity, pred, values, pred.cost, self.rng, penalty)
        return Market(ctx, x)
