"""Online QoS predictors, one set per backend, scored for a whole N x M batch at once.

Each backend has three predictors (IEMAS §4.1), all river Hoeffding trees on numeric features:

- latency (TTFT, seconds), on the log scale: recursive least squares on (1, uncached k-tokens,
  in-flight, utilisation) plus a regression tree on its residual. TTFT is heavy-tailed (a cached
  turn takes one decode step, a cold prompt or a queue ten to thirty times longer), so raw-scale
  outliers would swamp the tree's split statistics. The linear part carries the physics from the
  first few observations (prefill grows with uncached tokens, queueing with load) and its prior
  makes an unseen backend load-aware too; the tree starts on the residual only once the linear
  part has settled, since a leaf mean would otherwise remember residuals of a moving baseline;
- cost: the IEMAS Eq. 6 baseline (the backend's own prices, the ledger's uncached-token
  estimate, a running mean of output length per domain) plus a regression tree on the residual.
  The baseline is stationary, so the tree learns a stable correction;
- quality: a classification tree, leaf class frequencies Laplace-smoothed (0.5 before labels).

A residual tree over a baseline that is itself still learning does not work: its leaf means
keep the early residuals long after the baseline has moved, so latency has no learned baseline.

river scores one dict at a time (about 5 µs a call, 100 ms for 200 x 100 pairs), so the trees
are compiled to flat arrays after they change and all pairs descend them together in numpy.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from river import tree

from mercato.gateway.core.features import (
    CAPACITY,
    DOMAINS,
    INFLIGHT,
    QUALITY_FEATURES,
    TREE_FEATURES,
    UNCACHED,
    WAIT,
)
from mercato.gateway.core.latency import QueueingLatencyModel, predict_ttft
from mercato.gateway.core.types import BackendSpec

_MIN_LATENCY_S = 1e-3
# Linear prior on log TTFT: 0.1 s idle, x1.6 per uncached k-token, x1.1 per request in flight.
_LATENCY_COLUMNS = [1, 7, 10]  # uncached_ktok, backend_inflight, utilisation
_LATENCY_PRIOR = np.array([math.log(0.1), 0.5, 0.1, 0.0])
_RLS_FORGET = 0.99
# Forgetting inflates the covariance by 1/0.99 per update along directions the data never excite
# (in-flight and utilisation are collinear for a fixed capacity); unbounded, it overflows to NaN
# after about 70k updates. Capping its trace keeps RLS finite without touching short runs.
_RLS_TRACE_CAP = 1e6
_RESIDUAL_WARMUP = 30
_OUTPUT_EWMA = 0.1


LATENCY_MODELS = ("queueing", "log_linear_tree")


@dataclass(frozen=True)
class PredictorSettings:
    """Tree hyper-parameters (river's names) and the output-length prior."""

    # river's default grace period (IEMAS kept it too): split attempts deep-copy every splitter's
    # statistics, which at 20 cost 0.8 ms per learned request against 0.2 ms at 200, and the
    # linear latency model already carries the structure a young tree would need splits for.
    # The regression trees use the quantization observer (QOSplitter) instead of river's default
    # extended binary search tree: a split attempt walks a few fixed-radius bins, not every value
    # seen, so it stalls the gateway's event loop for about 5 ms instead of about 28 ms, and a
    # learned request costs a third as much (0.05 ms against 0.15 ms per tree). The price is a
    # coarser split point: latency NMAE 0.66 against 0.59 in `mercato experiment iemas predictors`.
    grace_period: int = 200
    max_depth: int = 10
    split_confidence: float = 1e-3  # river's delta; its 1e-7 default needs thousands of samples
    default_output_tokens: float = 32.0
    # Pseudo-labels (half correct) each quality leaf starts from. Correctness is a coin flip per
    # question, so a few dozen labels cannot tell two models apart; with the Laplace prior of 2, two
    # engines of one model looked 0.3 apart after ten labels each, worth more than the whole
    # price of a request, and the auction moved sessions off their warm caches to chase it.
    quality_prior_weight: float = 20.0
    # "queueing": the non-negative physical model of :mod:`mercato.gateway.core.latency` on the
    # backends' prefill clocks; "log_linear_tree": log-TTFT recursive least squares plus a
    # residual tree (the default before issue 13; it cannot see a queue it has not met yet).
    latency_model: str = "queueing"

    def __post_init__(self) -> None:
        if self.latency_model not in LATENCY_MODELS:
            raise ValueError(f"latency_model must be one of {', '.join(LATENCY_MODELS)}, "
                             f"got {self.latency_model!r}")


@dataclass
class Predictions:
    """Per-pair estimates for one batch, each (N, M)."""

    latency_s: NDArray[np.float64]
    cost: NDArray[np.float64]
    quality: NDArray[np.float64]


@dataclass
class CompiledTree:
    """A river tree as arrays; node 0 is the root and ``feature < 0`` marks a leaf."""

    feature: NDArray[np.int64]
    threshold: NDArray[np.float64]
    left: NDArray[np.int64]
    right: NDArray[np.int64]
    value: NDArray[np.float64]


def _leaf_value(node: object, classifier: bool, prior_weight: float) -> float:
    stats = node.stats  # type: ignore[attr-defined]
    if classifier:
        positive = float(stats.get(True, 0.0))
        return (positive + 0.5 * prior_weight) / (float(sum(stats.values())) + prior_weight)
    return float(stats.mean.get())


def compile_tree(model: tree.HoeffdingTreeRegressor | tree.HoeffdingTreeClassifier,
                 classifier: bool, prior: float = 0.0, prior_weight: float = 2.0) -> CompiledTree:
    """Flatten a river Hoeffding tree with numeric binary splits (x <= threshold goes left).

    ``prior`` is the prediction of a tree that has seen nothing yet (classifiers: 0.5); a
    classifier's leaf frequencies are shrunk towards 0.5 by ``prior_weight`` pseudo-labels.
    """
    root = model._root
    if root is None:
        prior = 0.5 if classifier else prior
        return CompiledTree(np.array([-1]), np.zeros(1), np.zeros(1, np.int64),
                            np.zeros(1, np.int64), np.array([prior]))
    nodes: list[object] = []
    queue = [root]
    while queue:
        node = queue.pop()
        nodes.append(node)
        queue.extend(getattr(node, "children", None) or [])
    index_of = {id(n): i for i, n in enumerate(nodes)}
    size = len(nodes)
    out = CompiledTree(np.full(size, -1), np.zeros(size), np.zeros(size, np.int64),
                       np.zeros(size, np.int64), np.zeros(size))
    for i, node in enumerate(nodes):
        children = getattr(node, "children", None)
        if children:
            out.feature[i] = int(node.feature)  # type: ignore[attr-defined]
            out.threshold[i] = float(node.threshold)  # type: ignore[attr-defined]
            out.left[i], out.right[i] = index_of[id(children[0])], index_of[id(children[1])]
        else:
            out.value[i] = _leaf_value(node, classifier, prior_weight)
    return out


# Up to this many (request, backend) pairs a forest is descended pair by pair, beyond it level by
# level over all pairs at once (measured crossover: about 64 pairs of 30-60-node trees).
SMALL_DESCENT = 32


class Forest:
    """Compiled trees of all backends concatenated, so one descent scores every pair."""

    def __init__(self, trees: list[CompiledTree]) -> None:
        offsets = np.cumsum([0] + [len(t.feature) for t in trees[:-1]]).astype(np.int64)
        self.roots = offsets
        self.feature = np.concatenate([t.feature for t in trees])
        self.threshold = np.concatenate([t.threshold for t in trees])
        self.left = np.concatenate([t.left + o for t, o in zip(trees, offsets, strict=True)])
        self.right = np.concatenate([t.right + o for t, o in zip(trees, offsets, strict=True)])
        self.value = np.concatenate([t.value for t in trees])

    @functools.cached_property
    def _nodes(self) -> tuple[list[int], list[float], list[int], list[int], list[int]]:
        """The arrays as lists, for descending a few pairs without numpy's per-call overhead; built
        on first use, so that forests compiled only to be sent elsewhere (the tree trainer) skip it."""
        return (self.feature.tolist(), self.threshold.tolist(), self.left.tolist(), self.right.tolist(),
                self.roots.tolist())

    def leaves(self, x: NDArray[np.float64]) -> NDArray[np.int64]:
        """Leaf index of every pair of ``x`` (N, M, F), backend j descending tree j."""
        n, m, f = x.shape
        if n * m <= SMALL_DESCENT:
            return self._leaves_one_by_one(x)
        flat = x.reshape(n * m, f)
        node = np.repeat(self.roots[None, :], n, axis=0).ravel()
        active = np.flatnonzero(self.feature[node] >= 0)
        while active.size:
            nd = node[active]
            go_left = flat[active, self.feature[nd]] <= self.threshold[nd]
            node[active] = np.where(go_left, self.left[nd], self.right[nd])
            active = active[self.feature[node[active]] >= 0]
        return node.reshape(n, m)

    def _leaves_one_by_one(self, x: NDArray[np.float64]) -> NDArray[np.int64]:
        """:meth:`leaves` pair by pair in plain Python: ten times faster for a lone request, where
        each level of the vectorised descent costs several numpy calls for one pair. A NaN
        feature goes right in both (``nan <= t`` is false)."""
        feature, threshold, left, right, roots = self._nodes
        n, m, _ = x.shape
        out = np.empty((n, m), dtype=np.int64)
        for i, row in enumerate(x.tolist()):
            for j, pair in enumerate(row):
                node = roots[j]
                while (k := feature[node]) >= 0:
                    node = left[node] if pair[k] <= threshold[node] else right[node]
                out[i, j] = node
        return out


Forests = tuple[Forest, Forest, Forest]  # latency, cost, quality


def baseline_cost(prices: NDArray[np.float64], x: NDArray[np.float64],
                  output_tokens: NDArray[np.float64]) -> NDArray[np.float64]:
    """IEMAS Eq. 6 on estimates; ``prices`` (M, 3) = input, cached input, output per token."""
    prompt = x[:, :, 0] * 1000.0
    uncached = x[:, :, 1] * 1000.0
    return (prices[None, :, 0] * uncached + prices[None, :, 1] * (prompt - uncached)
            + prices[None, :, 2] * output_tokens)


@dataclass(frozen=True)
class TreeLesson:
    """What one finished request teaches a backend's trees: residuals over the baselines, the
    tree features (by column) and, when the reply was judged, the quality sample and label."""

    backend: int
    sample: dict[int, float]
    latency_residual: float | None  # None: the latency tree is not learning (queueing model, warm-up)
    cost_residual: float
    quality: tuple[dict[int, float], bool] | None


class TreeTrainer(Protocol):
    """Trains a bank's trees somewhere else (a child process: :mod:`mercato.gateway.live.tree_trainer`)
    and hands back the compiled forests."""

    def submit(self, lessons: list[TreeLesson]) -> None:
        """Queue lessons for training."""
        ...

    def latest(self) -> Forests | None:
        """The forests trained since the last call, if any are ready."""
        ...


class BackendPredictor:
    """The three online predictors of one backend, plus its baselines."""

    def __init__(self, spec: BackendSpec, settings: PredictorSettings,
                 quality_tree: tree.HoeffdingTreeClassifier | None = None) -> None:
        """``quality_tree`` is shared by the backends serving one model (correctness is the model's)."""
        self.spec = spec
        params = {"grace_period": settings.grace_period, "max_depth": settings.max_depth,
                  "delta": settings.split_confidence}
        self.latency_tree = tree.HoeffdingTreeRegressor(
            leaf_prediction="mean", splitter=tree.splitter.QOSplitter(), **params)
        self.cost_tree = tree.HoeffdingTreeRegressor(
            leaf_prediction="mean", splitter=tree.splitter.QOSplitter(), **params)
        self.quality_tree = quality_tree or tree.HoeffdingTreeClassifier(leaf_prediction="mc", **params)
        self.theta = _LATENCY_PRIOR.copy()
        self.cov = np.eye(len(_LATENCY_PRIOR))
        # always learned: it also runs the backend's prefill clock (overhead and prefill rate)
        self.queueing = QueueingLatencyModel()
        self.predicts_queueing = settings.latency_model == "queueing"
        self.output_tokens = np.full(len(DOMAINS) + 1, settings.default_output_tokens)
        self.prices = np.array([[spec.price_input, spec.price_cached_input, spec.price_output]])
        self.observations = 0

    def observe(self, backend: int, x: NDArray[np.float64], domain_index: int, latency_s: float | None,
                cost: float, completion_tokens: int, correct: bool | None,
                met_load: tuple[float, float] | None = None) -> TreeLesson:
        """Learn from one finished request what the next one needs at once (the queueing model,
        which runs the prefill clock, the log-TTFT least squares and the output lengths) and
        return what the trees are to learn from it (:meth:`train`).

        ``x`` is the request's feature row (F,) at this backend, ``backend`` its index. ``met_load``
        is the (in flight, prefill wait) the request met when it was sent, which can exceed the
        row's (batch-mates sent before it); the queueing model learns from it.
        """
        self.observations += 1
        residual = None
        if latency_s is not None:
            inflight, wait = met_load or (float(x[INFLIGHT]), float(x[WAIT]))
            self.queueing.learn(float(x[UNCACHED]), wait, inflight, latency_s)
        if latency_s is not None and not self.predicts_queueing:
            target = math.log(max(latency_s, _MIN_LATENCY_S))
            z = np.r_[1.0, x[_LATENCY_COLUMNS]]
            if self.observations > _RESIDUAL_WARMUP:
                residual = target - float(z @ self.theta)
            self._rls_update(z, target)
        out = self.output_tokens[domain_index:domain_index + 1].reshape(1, 1)
        cost_residual = cost - float(baseline_cost(self.prices, x[None, None], out)[0, 0])
        self.output_tokens[domain_index] += _OUTPUT_EWMA * (completion_tokens
                                                            - self.output_tokens[domain_index])
        quality = ({k: float(x[k]) for k in QUALITY_FEATURES}, bool(correct)) if correct is not None else None
        return TreeLesson(backend, {k: float(v) for k, v in enumerate(x[:TREE_FEATURES])}, residual,
                          cost_residual, quality)

    def train(self, lesson: TreeLesson) -> None:
        """Teach this backend's trees one lesson from :meth:`observe`."""
        if lesson.latency_residual is not None:
            self.latency_tree.learn_one(lesson.sample, lesson.latency_residual)
        self.cost_tree.learn_one(lesson.sample, lesson.cost_residual)
        if lesson.quality is not None:
            self.quality_tree.learn_one(*lesson.quality)


    def _rls_update(self, z: NDArray[np.float64], y: float) -> None:
        """Recursive least squares with exponential forgetting (tracks drifting load regimes)."""
        cz = self.cov @ z
        k = cz / (_RLS_FORGET + z @ cz)
        self.theta = self.theta + k * (y - z @ self.theta)
        self.cov = (self.cov - np.outer(k, cz)) / _RLS_FORGET
        trace = float(np.trace(self.cov))
        if trace > _RLS_TRACE_CAP:
            self.cov *= _RLS_TRACE_CAP / trace


class PredictorBank:
    """All backends' predictors; compiles forests lazily after learning."""

    def __init__(self, specs: list[BackendSpec], settings: PredictorSettings | None = None,
                 trainer: TreeTrainer | None = None) -> None:
        """``trainer``: train the trees there instead of here (until its first forests arrive,
        predictions use untrained trees, as a new bank's do)."""
        self.settings = settings or PredictorSettings()
        self._trainer = trainer
        self._untrained: list[TreeLesson] = []
        # one quality tree per model: engines of one model answer alike, and pooling their labels
        # halves the noise that would otherwise make identical engines look different
        models = [s.model for s in specs]
        names = list(dict.fromkeys(models))
        self._model_of = np.array([names.index(m) for m in models], dtype=np.int64)  # (M,)
        self._model_rep = [models.index(m) for m in names]  # the first backend of each model
        self.backends: list[BackendPredictor] = []
        for i, s in enumerate(specs):
            first = self._model_rep[self._model_of[i]]
            shared = self.backends[first].quality_tree if first < i else None
            self.backends.append(BackendPredictor(s, self.settings, shared))
        self.prices = np.array([[s.price_input, s.price_cached_input, s.price_output] for s in specs])
        # compiled latency and cost trees per backend; compiled quality trees per model, scored
        # once per (request, model) on the request's own features
        self._compiled: list[tuple[CompiledTree, CompiledTree] | None] = [None] * len(specs)
        self._quality: list[CompiledTree | None] = [None] * len(names)
        self._forests: Forests | None = None
        # Stacked per-backend parameters, brought up to date for the backends learned from since
        # (``_dirty``) when next read, so a run of observations costs one least-squares solve.
        self._dirty: set[int] = set()
        self._theta = np.stack([b.theta for b in self.backends])  # (M, 4)
        self._queueing = self.settings.latency_model == "queueing"
        self._rates = np.stack([b.queueing.theta for b in self.backends])  # (M, 4): t0, s, b, q
        self._output_tokens = np.stack([b.output_tokens for b in self.backends])  # (M, domains + 1)

    def learn(self, backend: int, x: NDArray[np.float64], domain_index: int, latency_s: float | None,
              cost: float, completion_tokens: int, correct: bool | None,
              met_load: tuple[float, float] | None = None) -> None:
        """Feed one observation to backend ``backend``'s predictors (see :meth:`BackendPredictor.observe`).

        With a trainer the trees' lesson waits for :meth:`refresh`, which hands it over.
        """
        lesson = self.backends[backend].observe(backend, x, domain_index, latency_s, cost, completion_tokens,
                                                correct, met_load)
        self._dirty.add(backend)
        if self._trainer is None:
            self.train([lesson])
        else:
            self._untrained.append(lesson)

    def calibrate(self, backend: int, uncached_ktok: float, ttft_s: float) -> None:
        """A TTFT measured at an idle backend (no queue, nothing in flight): only the queueing
        model learns it, as the overhead and prefill rate it pins down; the trees and the cost
        and quality estimates are about served traffic, which a probe is not."""
        self.backends[backend].queueing.learn(uncached_ktok, 0.0, 0.0, ttft_s)
        self._dirty.add(backend)

    def train(self, lessons: list[TreeLesson]) -> None:
        """Teach the trees here (a background trainer's child process calls this on its own bank)."""
        for lesson in lessons:
            self.backends[lesson.backend].train(lesson)
            self._compiled[lesson.backend] = None
            if lesson.quality is not None:
                self._quality[self._model_of[lesson.backend]] = None
        if lessons:
            self._forests = None

    def refresh(self) -> None:
        """Bring parameters and compiled trees up to date now (else the next prediction does);
        with a trainer, hand it what was learned since and take the forests it has ready."""
        self._sync()
        if self._trainer is not None and self._untrained:
            lessons, self._untrained = self._untrained, []
            self._trainer.submit(lessons)
        self.forests()

    def forests(self) -> Forests:
        """The compiled latency, cost and quality forests the next prediction uses."""
        if self._trainer is not None and (newer := self._trainer.latest()) is not None:
            self._forests = newer
        return self._forest_set()

    def _sync(self) -> None:
        for backend in self._dirty:
            predictor = self.backends[backend]
            self._theta[backend] = predictor.theta
            self._rates[backend] = predictor.queueing.theta
            self._output_tokens[backend] = predictor.output_tokens
        self._dirty.clear()

    def _forest_set(self) -> Forests:
        if self._forests is None:
            for i, b in enumerate(self.backends):
                if self._compiled[i] is None:
                    self._compiled[i] = (compile_tree(b.latency_tree, False),
                                         compile_tree(b.cost_tree, False))
            weight = self.settings.quality_prior_weight
            for k, j in enumerate(self._model_rep):
                if self._quality[k] is None:
                    self._quality[k] = compile_tree(self.backends[j].quality_tree, True, prior_weight=weight)
            compiled = [c for c in self._compiled if c is not None]
            latency, cost = (Forest([c[k] for c in compiled]) for k in range(2))
            self._forests = (latency, cost, Forest([q for q in self._quality if q is not None]))
        assert self._forests is not None
        return self._forests

    def prefill_clock(self, backend: int) -> tuple[float, float]:
        """``(t0, s)`` of a backend's queueing model: first-token overhead (s) and prefill s/k-token.

        The router runs each backend's prefill clock (:mod:`mercato.gateway.core.load`) on them.
        """
        self._sync()
        t0, rate = self._rates[backend, :2]
        return float(t0), float(rate)

    def load_slope(self, x: NDArray[np.float64], latency_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """(N, M) predicted extra TTFT (s) per further request in flight at each pair's backend.

        The queueing model's ``b * s * u + q``: a further request queues behind a prefill like
        this pair's own (``u``, its uncached k-tokens) and decodes beside it; for the log-linear
        model the derivative of ``exp(linear)`` in the in-flight and utilisation columns,
        floored at 0 (it can learn a negative load effect, which would invite piling up).
        """
        self._sync()
        if self._queueing:
            rates = self._rates
            return rates[None, :, 2] * rates[None, :, 1] * x[:, :, UNCACHED] + rates[None, :, 3]
        per_request = self._theta[None, :, 2] + self._theta[None, :, 3] / np.maximum(x[:, :, CAPACITY], 1.0)
        return np.maximum(latency_s * per_request, 0.0)

    def predict(self, x: NDArray[np.float64], domain_index: NDArray[np.int64]) -> Predictions:
        """Estimates for every pair of ``x`` (N, M, F); ``domain_index`` (N,) picks output priors."""
        self._sync()
        latency_f, cost_f, quality_f = self.forests()
        if self._queueing:
            ttft = predict_ttft(self._rates, x[:, :, UNCACHED], x[:, :, WAIT], x[:, :, INFLIGHT])
            latency = np.maximum(ttft, _MIN_LATENCY_S)
        else:
            theta = self._theta
            linear = theta[None, :, 0] + sum(x[:, :, c] * theta[:, k + 1]
                                             for k, c in enumerate(_LATENCY_COLUMNS))
            latency = np.exp(linear + latency_f.value[latency_f.leaves(x)])
        out_tokens = self._output_tokens[:, domain_index].T  # (N, M)
        cost = np.maximum(baseline_cost(self.prices, x, out_tokens) + cost_f.value[cost_f.leaves(x)], 0.0)
        per_model = quality_f.value[quality_f.leaves(x[:, self._model_rep])]  # (N, models)
        quality = per_model[:, self._model_of]
        return Predictions(latency, cost, quality)
