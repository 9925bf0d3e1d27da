"""A k-nearest-neighbour quality router: a **stand-in** for the learned routers IEMAS compared with.

The paper's learned baselines (GraphRouter, GMTRouter, RouterDC) embed a query, relate it to
queries whose outcomes are known, and send it to the model expected to answer best for its price,
one request at a time and blind to KV caches. Their code and checkpoints are not part of
mercato, so this policy stands in for the family; it is none of them. It learns online from the
run's own feedback:

- embedding: signed feature hashing of the word unigrams and bigrams of the last user message
  plus the domain tag, L2-normalised, so a dot product is a cosine similarity;
- memory: per backend, the last ``memory`` finished queries with their correctness and observed
  IEMAS Eq. 6 cost;
- prediction: per backend, the similarity-weighted mean correctness of the ``k`` most similar
  remembered queries under a Beta(1, 1) prior, and the same weighted mean of their cost (the
  backend's list price for the prompt while it remembers nothing);
- decision: the best ``quality - cost_weight * cost / max cost`` among backends with a free slot,
  plus an exploration bonus ``explore / sqrt(1 + labels)`` that shrinks as a backend collects labels.
"""

from __future__ import annotations

import itertools
import re
import zlib

import numpy as np
from numpy.typing import NDArray

from mercato.gateway.core.market import BatchContext
from mercato.gateway.core.policies.base import Allocation, greedy_fill
from mercato.gateway.core.types import BackendSpec, Observation, RouteRequest

_WORD = re.compile(r"[a-z0-9]+")
_USER = "<|user|>\n"


def last_user_message(prompt: str) -> str:
    """The text of the last user message of a ``render_chat`` prompt (the whole prompt if none)."""
    start = prompt.rfind(_USER)
    return prompt[start + len(_USER) :] if start >= 0 else prompt


def hashed_embedding(text: str, domain: str | None, dim: int) -> NDArray[np.float64]:
    """Signed hashing of unigrams, bigrams and the domain tag; unit L2 norm (zeros if empty)."""
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)] + [f"__domain_{domain}"]
    x = np.zeros(dim)
    for g in grams:
        h = zlib.crc32(g.encode())
        x[h % dim] += 1.0 if (h >> 31) & 1 else -1.0
    norm = float(np.linalg.norm(x))
    return x / norm if norm > 0 else x


class _Memory:
    """A ring buffer of one backend's finished queries: embeddings, correctness, cost."""

    def __init__(self, size: int, dim: int) -> None:
        self.keys = np.zeros((size, dim))
        self.correct = np.zeros(size)
        self.cost = np.zeros(size)
        self.count = 0

    def add(self, key: NDArray[np.float64], correct: float, cost: float) -> None:
        """Overwrite the oldest entry once full."""
        slot = self.count % len(self.correct)
        self.keys[slot], self.correct[slot], self.cost[slot] = key, correct, cost
        self.count += 1

    @property
    def size(self) -> int:
        """Entries held."""
        return min(self.count, len(self.correct))


class KnnQualityPolicy:
    """Per-backend memories of (query embedding, correct, cost); route by the k most similar."""

    name = "knn"

    def __init__(
        self,
        n_backends: int,
        *,
        k: int = 16,
        dim: int = 256,
        memory: int = 512,
        cost_weight: float = 0.1,
        explore: float = 0.3,
    ) -> None:
        if min(k, dim, memory) < 1:
            raise ValueError(f"k, dim and memory must be >= 1, got {k}, {dim}, {memory}")
        self.k, self.dim, self.cost_weight, self.explore = k, dim, cost_weight, explore
        self.memories = [_Memory(memory, dim) for _ in range(n_backends)]
        self._backends: list[BackendSpec] = []

    def embed(self, request: RouteRequest) -> NDArray[np.float64]:
        """The query's embedding: its last user message and its domain."""
        return hashed_embedding(last_user_message(request.prompt), request.domain, self.dim)

    def predict(
        self, x: NDArray[np.float64], list_cost: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """For queries ``x`` (N, dim): P(correct) and cost per backend (N, M), and labels per backend (M,).

        ``list_cost`` (N, M) is the cost to assume where a backend remembers nothing yet.
        """
        n, m = list_cost.shape
        quality, cost = np.full((n, m), 0.5), list_cost.astype(np.float64).copy()
        labels = np.array([mem.size for mem in self.memories], dtype=np.float64)
        for j, mem in enumerate(self.memories):
            size = mem.size
            if size == 0:
                continue
            sim = np.clip(x @ mem.keys[:size].T, 0.0, None)  # (N, size)
            k = min(self.k, size)
            near = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            w = np.take_along_axis(sim, near, axis=1) + 1e-3  # a neighbour sharing no word still counts
            quality[:, j] = ((w * mem.correct[near]).sum(axis=1) + 1.0) / (w.sum(axis=1) + 2.0)
            cost[:, j] = (w * mem.cost[near]).sum(axis=1) / w.sum(axis=1)
        return quality, cost, labels

    def allocate(self, ctx: BatchContext) -> Allocation:
        """Best predicted quality net of relative cost, with an optimism bonus for rarely tried backends."""
        self._backends = ctx.backends
        if not ctx.requests:
            return Allocation.unpriced(np.zeros(0, dtype=np.int64))
        x = np.stack([self.embed(r) for r in ctx.requests])
        prompt = np.array([r.prompt_tokens for r in ctx.requests], dtype=np.float64)
        prices = np.array([b.price_input for b in ctx.backends])
        quality, cost, labels = self.predict(x, prompt[:, None] * prices[None, :])
        relative = cost / np.maximum(cost.max(axis=1, keepdims=True), 1e-12)
        score = quality + self.explore / np.sqrt(1.0 + labels)[None, :] - self.cost_weight * relative
        return Allocation.unpriced(greedy_fill(ctx, score))

    def observe(self, request: RouteRequest, backend: int, observation: Observation) -> None:
        """Remember the finished query at the backend that served it (when correctness is known)."""
        if not observation.ok or observation.correct is None or not self._backends:
            return
        spec = self._backends[backend]
        cost = spec.cost(observation.prompt_tokens, observation.cached_tokens, observation.completion_tokens)
        self.memories[backend].add(self.embed(request), float(observation.correct), cost)
