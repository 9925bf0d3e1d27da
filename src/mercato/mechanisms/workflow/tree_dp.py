"""Exact allocation on forests (chains, trees, polytrees) by dynamic programming.

The paper's recurrence D[v, i] = G(v, i) + sum_children min_j (D[u, j] + switch(i, j)) costs
O(|M|^2) per edge in general. Here a switch only depends on whether the two agents are equal,
so the inner minimum is ``min(min_j D[u, j], D[u, i] - bonus(i))``: O(|V| |M|) in total. Edge
directions do not matter to the objective, so any undirected forest works, rooted anywhere.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mercato.mechanisms.workflow.market import WorkflowMarket


class TreeSolver:
    """Bottom-up DP over a BFS order of each tree of the workflow's undirected graph."""

    name = "tree"

    def __init__(self, market: WorkflowMarket) -> None:
        workflow = market.workflow
        if not workflow.is_forest():
            raise ValueError("the tree solver needs a workflow without undirected cycles; "
                             "use junction_tree or milp")
        n = market.n_nodes
        neighbours: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for e, (u, v) in enumerate(zip(workflow.sources.tolist(), workflow.targets.tolist(), strict=True)):
            neighbours[u].append((v, e))
            neighbours[v].append((u, e))
        self.parent = np.full(n, -1, dtype=np.int64)
        self.parent_edge = np.full(n, -1, dtype=np.int64)
        order: list[int] = []
        seen = np.zeros(n, dtype=bool)
        for root in range(n):
            if seen[root]:
                continue
            seen[root] = True
            order.append(root)
            head = len(order) - 1
            while head < len(order):
                u = order[head]
                head += 1
                for v, e in neighbours[u]:
                    if not seen[v]:
                        seen[v] = True
                        self.parent[v], self.parent_edge[v] = u, e
                        order.append(v)
        self.order = order

    def solve(self, node_cost: NDArray[np.float64], bonus: NDArray[np.float64]) -> NDArray[np.int64]:
        """Optimal node -> agent assignment for these costs (ties: stay with the parent's agent)."""
        table = node_cost.copy()
        best = np.empty(len(self.order))
        for v in reversed(self.order):
            best[v] = table[v].min()
            p = self.parent[v]
            if p >= 0:
                table[p] += np.minimum(best[v], table[v] - bonus[self.parent_edge[v]])
        assignment = np.empty(len(self.order), dtype=np.int64)
        for v in self.order:
            p = self.parent[v]
            if p < 0:
                assignment[v] = int(np.argmin(table[v]))
                continue
            i = assignment[p]
            stay = table[v, i] - bonus[self.parent_edge[v], i]
            assignment[v] = i if stay <= best[v] else int(np.argmin(table[v]))
        return assignment
