"""Exact allocation on any workflow of small treewidth: min-sum DP over a tree decomposition.

networkx's min-fill-in / min-degree heuristics give a tree of *bags* (node sets) covering
every edge, in which the bags holding any one node form a subtree. Each node's cost and each
edge's stickiness bonus is charged to exactly one bag, so nothing is counted twice (the
paper's correction term Delta is not needed), and a bag's table ranges only over the agents
able to serve each of its nodes. A bag passes up the minimum over the nodes it does not share
with its parent; the root's argmin and the stored tables then fix every node top-down.
Cost: sum over bags of the product of the nodes' capable-agent counts, <= |V| |M|^(w+1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx
import numpy as np
from networkx.algorithms.approximation import treewidth_min_degree, treewidth_min_fill_in
from numpy.typing import NDArray

from mercato.mechanisms.workflow.market import WorkflowMarket


@dataclass(frozen=True)
class _Sticky:
    """Edge ``edge``'s bonus as a (source domain x target domain) matrix placed in a bag.

    ``rows``/``cols`` index the pairs where both ends have the same agent, ``agents`` that agent.
    """

    edge: int
    size: tuple[int, int]
    source_major: bool
    rows: NDArray[np.int64]
    cols: NDArray[np.int64]
    agents: NDArray[np.int64]
    shape: tuple[int, ...]


class _Bag:
    """One bag: its nodes (sorted), table shape and the factors charged to it."""

    def __init__(self, nodes: tuple[int, ...], domains: list[NDArray[np.int64]]) -> None:
        self.nodes = nodes
        self.shape = tuple(domains[v].size for v in nodes)
        self.axis = {v: k for k, v in enumerate(nodes)}
        self.unary: list[tuple[int, tuple[int, ...]]] = []
        self.pairwise: list[_Sticky] = []
        self.parent = -1
        self.children: list[int] = []
        self.eliminate: tuple[int, ...] = ()
        self.message_shape: tuple[int, ...] = ()

    def broadcast(self, axes: dict[int, int]) -> tuple[int, ...]:
        """Shape that puts ``{axis: size}`` in place and 1 elsewhere."""
        return tuple(axes.get(k, 1) for k in range(len(self.nodes)))


class JunctionTreeSolver:
    """Min-sum DP over the smaller of the min-fill-in and min-degree tree decompositions."""

    name = "junction_tree"

    def __init__(self, market: WorkflowMarket) -> None:
        workflow = market.workflow
        domains = [np.flatnonzero(market.capable[v]) for v in range(market.n_nodes)]
        self.domains = domains
        best: tuple[int, nx.Graph] | None = None
        for heuristic in (treewidth_min_fill_in, treewidth_min_degree):
            width, tree = heuristic(workflow.undirected)
            size = sum(math.prod(domains[v].size for v in bag) for bag in tree.nodes)
            if best is None or size < best[0]:
                best = (size, tree)
                self.width: int = width
        assert best is not None
        self.table_size, tree = best
        keys = list(tree.nodes)
        position = {key: k for k, key in enumerate(keys)}
        self.bags = [_Bag(tuple(sorted(key)), domains) for key in keys]
        self.order: list[int] = []
        for component in nx.connected_components(tree):
            root = position[min(component, key=lambda b: (-len(b), sorted(b)))]
            self.order.append(root)
            for parent, child in nx.bfs_edges(tree, keys[root]):
                p, c = position[parent], position[child]
                self.bags[c].parent = p
                self.bags[p].children.append(c)
                self.order.append(c)
        home: dict[int, int] = {}
        for b in self.order:
            for v in self.bags[b].nodes:
                home.setdefault(v, b)
        for v, b in home.items():
            bag = self.bags[b]
            bag.unary.append((v, bag.broadcast({bag.axis[v]: bag.shape[bag.axis[v]]})))
        for e, (u, v) in enumerate(zip(workflow.sources.tolist(), workflow.targets.tolist(), strict=True)):
            b = next(b for b in self.order if u in self.bags[b].axis and v in self.bags[b].axis)
            bag = self.bags[b]
            common, rows, cols = np.intersect1d(domains[u], domains[v], return_indices=True)
            au, av = bag.axis[u], bag.axis[v]
            shape = bag.broadcast({au: bag.shape[au], av: bag.shape[av]})
            bag.pairwise.append(_Sticky(e, (domains[u].size, domains[v].size), au < av, rows, cols,
                                        common, shape))
        for bag in self.bags:
            if bag.parent >= 0:
                shared = set(self.bags[bag.parent].nodes)
                bag.eliminate = tuple(k for k, v in enumerate(bag.nodes) if v not in shared)
                parent = self.bags[bag.parent]
                bag.message_shape = parent.broadcast(
                    {parent.axis[v]: parent.shape[parent.axis[v]] for v in bag.nodes if v in shared})

    def solve(self, node_cost: NDArray[np.float64], bonus: NDArray[np.float64]) -> NDArray[np.int64]:
        """Optimal node -> agent assignment for these costs."""
        tables: list[NDArray[np.float64]] = [np.empty(0)] * len(self.bags)
        messages: list[NDArray[np.float64]] = [np.empty(0)] * len(self.bags)
        for b in reversed(self.order):
            bag = self.bags[b]
            table = np.zeros(bag.shape)
            for v, shape in bag.unary:
                table = table + node_cost[v, self.domains[v]].reshape(shape)
            for f in bag.pairwise:
                mat = np.zeros(f.size)
                mat[f.rows, f.cols] = -bonus[f.edge, f.agents]
                table = table + (mat if f.source_major else mat.T).reshape(f.shape)
            for c in bag.children:
                table = table + messages[c]
            tables[b] = table
            if bag.parent >= 0:
                reduced = table.min(axis=bag.eliminate) if bag.eliminate else table
                messages[b] = reduced.reshape(bag.message_shape)
        local = np.full(len(self.domains), -1, dtype=np.int64)
        for b in self.order:
            bag = self.bags[b]
            index = tuple(int(local[v]) if local[v] >= 0 else slice(None) for v in bag.nodes)
            sub = tables[b][index]
            free = [v for v in bag.nodes if local[v] < 0]
            if free:
                pick = np.unravel_index(int(np.argmin(sub)), sub.shape)
                for v, k in zip(free, pick, strict=True):
                    local[v] = k
        return np.array([self.domains[v][local[v]] for v in range(len(self.domains))], dtype=np.int64)
