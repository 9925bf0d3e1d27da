"""Choosing an exact solver by topology, and running it with feasibility checks.

All three solvers return an optimum of the same objective; only their speed depends on the
graph: the tree DP needs a forest, the junction tree a small treewidth, the MILP nothing.
There is deliberately no heuristic fallback: a non-optimal allocation can take work away
from an agent that lowers its bid, and then critical-value payments are no longer truthful.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from mercato.mechanisms.workflow.junction_tree import JunctionTreeSolver
from mercato.mechanisms.workflow.market import WorkflowMarket
from mercato.mechanisms.workflow.milp import MilpSolver
from mercato.mechanisms.workflow.tree_dp import TreeSolver

SOLVER_NAMES: tuple[str, ...] = ("auto", "tree", "junction_tree", "milp")
# Above this many table entries (summed over bags) the junction tree gives way to the MILP.
JUNCTION_TREE_MAX_TABLE = 2_000_000


class AllocationSolver(Protocol):
    """Exact minimiser of sum_v node_cost[v, A(v)] - sum_e bonus[e, A(v)] * [A(u) = A(v)]."""

    name: str

    def solve(self, node_cost: NDArray[np.float64], bonus: NDArray[np.float64]) -> NDArray[np.int64]:
        """Optimal node -> agent assignment."""
        ...


def make_solver(market: WorkflowMarket, method: str = "auto") -> AllocationSolver:
    """The named solver, or for ``auto``: tree DP on forests, junction tree when small, else MILP."""
    if method not in SOLVER_NAMES:
        raise ValueError(f"unknown solver '{method}'; choose one of {', '.join(SOLVER_NAMES)}")
    if method == "tree" or (method == "auto" and market.workflow.is_forest()):
        return TreeSolver(market)
    if method == "milp":
        return MilpSolver(market)
    junction = JunctionTreeSolver(market)
    if method == "auto" and junction.table_size > JUNCTION_TREE_MAX_TABLE:
        return MilpSolver(market)
    return junction


def allocate(market: WorkflowMarket, phi: NDArray[np.float64], solver: AllocationSolver
             ) -> NDArray[np.int64]:
    """Minimum-virtual-cost assignment for virtual costs ``phi`` (``inf`` = agent refused)."""
    node_cost = market.node_cost(phi)
    open_nodes = np.isfinite(node_cost).any(axis=1)
    if not open_nodes.all():
        node = market.workflow.nodes[int(np.argmin(open_nodes))]
        raise ValueError(f"node '{node.name}': every agent able to serve it bid above its reserve")
    return solver.solve(node_cost, market.bonus(phi))
