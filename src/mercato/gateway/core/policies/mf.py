"""A matrix-factorisation quality router in the spirit of RouteLLM's MF router.

RouteLLM scores a (query, model) pair as a bilinear form between a learned projection of the
query's embedding and a learned model embedding, trained on preference data. Here there is no
offline preference data, so the router trains online from the run's own feedback: a query is
a hashed bag of its last words plus its domain, the score is
``sigmoid(b_m + q_m . (P^T x))`` = predicted probability that model m answers correctly, and
each finished request with a known answer takes one SGD step on the logistic loss (L2-regularised
in ``q_m`` and ``P``). Routing picks the best ``quality - cost_weight * relative price`` with a free
slot (price: input plus output list price, relative to the dearest backend's), and with probability
``explore / (1 + updates / 50)`` scores a request's backends at random instead, so that every
backend gets labels.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
from numpy.typing import NDArray

from mercato.gateway.core.market import BatchContext
from mercato.gateway.core.policies.base import Allocation, greedy_fill
from mercato.gateway.core.types import Observation, RouteRequest

_WORD = re.compile(r"[a-z0-9]+")


class MatrixFactorisationPolicy:
    """Online bilinear quality model over hashed query features and per-backend embeddings."""

    name = "mf"

    def __init__(self, n_backends: int, *, dim: int = 16, hash_dim: int = 512, lr: float = 0.1,
                 l2: float = 1e-4, explore: float = 0.2, cost_weight: float = 0.1, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.hash_dim = hash_dim
        self.projection = rng.normal(0.0, 0.1, (hash_dim, dim))
        self.models = rng.normal(0.0, 0.1, (n_backends, dim))
        self.bias = np.zeros(n_backends)
        self.lr, self.l2, self.explore, self.cost_weight = lr, l2, explore, cost_weight
        self.updates = 0

    def embed(self, request: RouteRequest) -> NDArray[np.float64]:
        """Hashed, L2-normalised bag of the last 64 words in the last 600 characters, and the domain."""
        words = _WORD.findall(request.prompt[-600:].lower())[-64:]
        words.append(f"__domain_{request.domain}")
        x = np.zeros(self.hash_dim)
        for w in words:
            x[zlib.crc32(w.encode()) % self.hash_dim] += 1.0
        return x / max(1.0, float(np.linalg.norm(x)))

    def quality(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Predicted probability of a correct answer from every backend for embedding ``x``."""
        return 1.0 / (1.0 + np.exp(-(self.bias + self.models @ (x @ self.projection))))

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Best predicted quality net of relative price, with decaying random exploration."""
        prices = np.array([b.price_input + b.price_output for b in ctx.backends])
        relative = prices / max(float(prices.max()), 1e-12)
        score = np.stack([self.quality(self.embed(r)) for r in ctx.requests]) if ctx.requests else \
            np.zeros(ctx.allowed.shape)
        score = score - self.cost_weight * relative[None, :]
        explore = self.explore / (1.0 + self.updates / 50.0)
        noisy = ctx.rng.random(len(ctx.requests)) < explore
        score[noisy] = ctx.rng.random((int(noisy.sum()), ctx.allowed.shape[1]))
        return Allocation.unpriced(greedy_fill(ctx, score))

    def observe(self, request: RouteRequest, backend: int, observation: Observation) -> None:
        """One logistic-loss SGD step when the answer's correctness is known."""
        if observation.correct is None or not observation.ok:
            return
        x = self.embed(request)
        z = x @ self.projection
        p = 1.0 / (1.0 + np.exp(-(self.bias[backend] + self.models[backend] @ z)))
        g = p - float(observation.correct)
        model_row = self.models[backend].copy()
        self.bias[backend] -= self.lr * g
        self.models[backend] -= self.lr * (g * z + self.l2 * self.models[backend])
        self.projection -= self.lr * (g * np.outer(x, model_row) + self.l2 * self.projection)
        self.updates += 1
