"""Exact allocation on any DAG as a mixed-integer linear program (HiGHS via scipy).

The paper's formulation: binary ``x[v, i]`` (node v on agent i) and a cache-miss indicator
``delta[e, i] >= x[target, i] - x[source, i]``, which minimisation drives to 1 exactly when
the target sits on i but the source does not. A node's coefficient is its cost with every
incoming context cached; ``delta`` adds back each edge's bonus when the context is re-read.
The relative MIP gap is set to 0: an approximate optimum would break monotonicity.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from mercato.mechanisms.workflow.market import WorkflowMarket


class MilpSolver:
    """One MILP per call; any topology, slower than the DPs on sparse graphs."""

    name = "milp"

    def __init__(self, market: WorkflowMarket) -> None:
        self.sources = market.workflow.sources
        self.targets = market.workflow.targets

    def solve(self, node_cost: NDArray[np.float64], bonus: NDArray[np.float64]) -> NDArray[np.int64]:
        """Optimal node -> agent assignment for these costs."""
        n, m = node_cost.shape
        allowed = np.isfinite(node_cost)
        x_index = np.full((n, m), -1, dtype=np.int64)
        x_index[allowed] = np.arange(int(allowed.sum()))
        n_x = int(allowed.sum())
        coef = node_cost.copy()
        np.subtract.at(coef, self.targets, bonus)
        e_idx, agents = np.nonzero((bonus > 0) & allowed[self.targets])
        n_d = e_idx.size
        c = np.concatenate([coef[allowed], bonus[e_idx, agents]])
        rows = [np.repeat(np.arange(n), allowed.sum(axis=1))]
        cols = [x_index[allowed]]
        vals = [np.ones(n_x)]
        # delta[k] >= x[target, i] - x[source, i]  <=>  x[target, i] - x[source, i] - delta[k] <= 0
        d_rows = n + np.arange(n_d)
        rows += [d_rows, d_rows]
        cols += [x_index[self.targets[e_idx], agents], n_x + np.arange(n_d)]
        vals += [np.ones(n_d), -np.ones(n_d)]
        has_source = x_index[self.sources[e_idx], agents] >= 0
        rows.append(d_rows[has_source])
        cols.append(x_index[self.sources[e_idx], agents][has_source])
        vals.append(-np.ones(int(has_source.sum())))
        a = sparse.csr_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n + n_d, n_x + n_d))
        lower = np.concatenate([np.ones(n), np.full(n_d, -np.inf)])
        upper = np.concatenate([np.ones(n), np.zeros(n_d)])
        result = milp(c, constraints=LinearConstraint(a, lower, upper),
                      integrality=np.concatenate([np.ones(n_x), np.zeros(n_d)]),
                      bounds=Bounds(0.0, 1.0), options={"mip_rel_gap": 0.0})
        if not result.success:
            raise RuntimeError(f"MILP solver failed: {result.message}")
        chosen = result.x[:n_x] > 0.5
        rows_of_x, cols_of_x = np.nonzero(allowed)
        assignment = np.full(n, -1, dtype=np.int64)
        assignment[rows_of_x[chosen]] = cols_of_x[chosen]
        return assignment
