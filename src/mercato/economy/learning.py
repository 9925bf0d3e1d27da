"""The agents' online logistic success model ``p(success | rho) = sigma(a + b * rho)``.

Table S3: ``a = 2``, ``b = -2``, one stochastic-gradient step per round with learning rate 0.3
towards the observed success rate. Two choices where the paper is silent:

* **One model per deadline class.** The paper's deadlines are class-dependent ({100, 150, 200}
  ms) and the model is said to learn *deadline-feasibility* success rates; a single model shared
  by all classes cannot tell a 100 ms task (which no path here can meet) from a 200 ms one, so
  each class keeps its own (a, b), all starting from the paper's prior.
* **The feature is the bottleneck utilisation** ``rho`` of the pool a task ran in (the largest
  executed load / capacity over the tiers), the quantity that decides whether the queueing term
  explodes. Bids use last round's value as the forecast; admission rules may evaluate the model
  at the utilisation their own candidate allocation would create.

The step is the log-loss gradient averaged over the class's executed tasks of the round, which
for one shared ``rho`` is exactly a step towards the class's round success rate.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def sigmoid(x: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """Logistic function, numerically safe for large |x|."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


class SuccessModel:
    """Per-class logistic success probability, updated online."""

    def __init__(self, n_classes: int, a: float, b: float, learning_rate: float) -> None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        self.a = np.full(n_classes, float(a))
        self.b = np.full(n_classes, float(b))
        self.learning_rate = float(learning_rate)

    def prob(self, classes: NDArray[np.int64], rho: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """Success probability of tasks of ``classes`` facing bottleneck utilisation ``rho``."""
        return sigmoid(self.a[classes] + self.b[classes] * rho)

    def update(self, classes: NDArray[np.int64], rho: NDArray[np.float64],
               success: NDArray[np.bool_]) -> None:
        """One gradient step per class present, on the round's executed tasks."""
        if classes.size == 0:
            return
        residual = success.astype(np.float64) - self.prob(classes, rho)
        k = self.a.size
        count = np.bincount(classes, minlength=k)
        seen = count > 0
        mean_r = np.bincount(classes, residual, minlength=k)[seen] / count[seen]
        mean_rx = np.bincount(classes, residual * rho, minlength=k)[seen] / count[seen]
        self.a[seen] += self.learning_rate * mean_r
        self.b[seen] += self.learning_rate * mean_rx
