"""The IEMAS authors' design, kept as a baseline: pure-Python successive-shortest-path flow.

Source -> request (cap 1) -> agent (cost -w) -> sink (cap q). Each augmentation finds a
cheapest source-sink path with SPFA (Bellman-Ford with a queue) over the residual graph and
stops when no path has negative cost, so the result is the exact welfare optimum (unlike a
min-cost *max*-flow). VCG payments with this solver re-solve the problem N + 1 times, which
is what ``mercato bench mechanisms`` compares the residual-graph method against.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.typing import NDArray


def ssp_assignment(weights: NDArray[np.float64], capacity: NDArray[np.int64]) -> list[int]:
    """Optimal assignment for non-negative ``weights`` (0 = unusable pair), in pure Python."""
    n, m = weights.shape
    source, sink = n + m, n + m + 1
    size = n + m + 2
    graph: list[list[int]] = [[] for _ in range(size)]
    to: list[int] = []
    cap: list[int] = []
    cost: list[float] = []

    def add_edge(u: int, v: int, c: int, w: float) -> None:
        graph[u].append(len(to))
        to.append(v), cap.append(c), cost.append(w)
        graph[v].append(len(to))
        to.append(u), cap.append(0), cost.append(-w)

    for j in range(n):
        add_edge(source, j, 1, 0.0)
        for i in range(m):
            if weights[j, i] > 0.0:
                add_edge(j, n + i, 1, -float(weights[j, i]))
    for i in range(m):
        if capacity[i] > 0:
            add_edge(n + i, sink, int(capacity[i]), 0.0)

    while True:
        dist = [float("inf")] * size
        parent = [-1] * size
        queued = [False] * size
        dist[source] = 0.0
        queue = deque([source])
        while queue:
            u = queue.popleft()
            queued[u] = False
            for e in graph[u]:
                v = to[e]
                if cap[e] > 0 and dist[u] + cost[e] < dist[v] - 1e-12:
                    dist[v] = dist[u] + cost[e]
                    parent[v] = e
                    if not queued[v]:
                        queued[v] = True
                        queue.append(v)
        if dist[sink] >= -1e-12:
            break
        v = sink
        while v != source:
            e = parent[v]
            cap[e] -= 1
            cap[e ^ 1] += 1
            v = to[e ^ 1]

    assignment = [-1] * n
    for j in range(n):
        for e in graph[j]:
            if n <= to[e] < n + m and cap[e] == 0 and cost[e] < 0:
                assignment[j] = to[e] - n
    return assignment


def ssp_vcg_externalities(weights: NDArray[np.float64], capacity: NDArray[np.int64]) -> list[float]:
    """Clarke externality of every request by N + 1 pure-Python solves (the paper's design)."""
    assignment = ssp_assignment(weights, capacity)
    total = sum(weights[j, a] for j, a in enumerate(assignment) if a >= 0)
    out = [0.0] * len(assignment)
    for j, a in enumerate(assignment):
        if a < 0:
            continue
        others = np.delete(weights, j, axis=0)
        sub = ssp_assignment(others, capacity)
        without_j = sum(others[k, b] for k, b in enumerate(sub) if b >= 0)
        out[j] = float(without_j - (total - weights[j, a]))
    return out
