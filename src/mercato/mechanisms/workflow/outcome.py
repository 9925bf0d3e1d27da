"""What a procurement mechanism decides: who does which node, how much work, what each is paid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class ProcurementOutcome:
    """Allocation and payments of one run of a workflow procurement mechanism.

    ``work[i]`` is agent i's work in output-token equivalents (its true cost is
    ``cost_i * work[i]``); ``payments[i]`` is what the buyer pays it (0 for losers).
    """

    mechanism: str
    assignment: NDArray[np.int64]
    work: NDArray[np.float64]
    payments: NDArray[np.float64]
    solver: str

    @property
    def total_payment(self) -> float:
        """What the buyer pays in all."""
        return float(self.payments.sum())

    @property
    def winners(self) -> NDArray[np.int64]:
        """Agents with some work."""
        return np.flatnonzero(self.work > 0)

    def utilities(self, costs: ArrayLike) -> NDArray[np.float64]:
        """Each agent's profit under its true per-unit costs: payment - cost * work."""
        return self.payments - np.asarray(costs, dtype=np.float64) * self.work

    def true_cost(self, costs: ArrayLike) -> float:
        """Resources the allocation actually consumes: sum of cost * work."""
        return float(np.dot(np.asarray(costs, dtype=np.float64), self.work))
