"""Service-dependency DAGs of tasks, and the per-run catalogue that tasks draw them from.

Each task is an instance of a service DAG whose nodes are services placed on a tier (0 device,
1 edge, 2 cloud); an edge ``u -> v`` says that ``v`` consumes ``u``'s output. Running a task
takes one capacity unit per node on that node's tier, so the task's **bundle** is its node count
per tier, and its **latency** is the longest source-to-sink path with each node weighted by its
tier's current latency (the critical path).

The authors' simulator gives every task of a topology one fixed bundle and path (linear 2/1/2,
tree 2/2/2, SP 2/4/5, entangled 5/4/3), so "entangled" differs only in weights. Here each task
gets its own DAG from a random generator per topology whose *expected* bundle equals those
profiles, so offered load (the paper's utilisation column) stays comparable, while:

* **linear** is a chain device -> edge -> cloud (1-3 / 1 / 1-3 nodes);
* **tree** is an aggregation in-tree: device leaves feed a random tree of edge services that
  feeds a chain of cloud services ending at the root;
* **sp** is two-terminal series-parallel: device sources feed an edge hub that fans out into
  parallel edge branches, each fanning out into parallel cloud inference nodes joined by one
  cloud aggregator (cloud-heavy, as the paper describes SP);
* **entangled** is a layered DAG device / edge / device / edge / cloud / cloud with random
  many-to-many links between layers, skip links two layers ahead, and always at least one
  "N" (a->c, a->d, b->d, no b->c), so it is never series-parallel: its leaf blocks cross and its
  feasible region is not a polymatroid. Its bundle varies per task and its critical path visits
  the device and edge tiers twice each, so congestion on either tier couples into the path twice:
  real cross-tier complementarity rather than a heavier fixed weight vector.

Linear, tree and SP templates are series-parallel in the sense of
:func:`mercato.mechanisms.series_parallel.is_series_parallel`; entangled ones are not (both tested).

Speed: building networkx graphs per task would dominate a run, so a run draws a **catalogue**
of ``Parameters.catalogue_size`` templates once (cached per topology, seed and size) and each
task picks one uniformly, like instances of a finite set of deployed service pipelines. Every
template is reduced to its bundle and to the Pareto-maximal per-tier node counts of its paths;
the critical path under any tier latencies is then one batched matrix product and a max.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import networkx as nx
import numpy as np
from numpy.typing import NDArray

from mercato.economy.config import TIERS, TOPOLOGIES

DEVICE, EDGE, CLOUD = 0, 1, 2
N_TIERS = len(TIERS)


@dataclass(frozen=True)
class Catalogue:
    """The service-DAG templates of one run, reduced to arrays for vectorised rounds.

    ``bundles[k, r]``: capacity units template k takes on tier r. ``paths[k, j, r]``: node count on
    tier r of the j-th Pareto-maximal source-to-sink path of template k (padded by repeating its
    first path). ``base_cp[k]``: critical path at the tiers' base delays.
    """

    topology: str
    graphs: tuple[nx.DiGraph, ...]
    bundles: NDArray[np.int64]
    paths: NDArray[np.float64]
    base_cp: NDArray[np.float64]

    @property
    def size(self) -> int:
        """Number of templates."""
        return len(self.graphs)

    @property
    def mean_bundle(self) -> NDArray[np.float64]:
        """Average per-tier demand of a task drawn uniformly from the catalogue."""
        return self.bundles.mean(axis=0)

    def critical_path(self, templates: NDArray[np.int64], tier_latency: NDArray[np.float64]
                      ) -> NDArray[np.float64]:
        """Longest-path latency of each task; ``tier_latency`` is (3,) or one row per task."""
        lat = np.broadcast_to(tier_latency, (templates.size, N_TIERS))
        return np.einsum("npr,nr->np", self.paths[templates], lat).max(axis=1)


def catalogue(topology: str, seed: int, size: int, capacities: tuple[float, float, float],
              base_delays: tuple[float, float, float]) -> Catalogue:
    """The run's catalogue: ``size`` templates of ``topology`` drawn from ``seed`` (cached)."""
    if topology not in GENERATORS:
        raise ValueError(f"unknown topology {topology!r}; choose one of {', '.join(TOPOLOGIES)}")
    if size < 1:
        raise ValueError(f"catalogue size must be >= 1, got {size}")
    return _cached_catalogue(topology, seed, size, tuple(capacities), tuple(base_delays))


@lru_cache(maxsize=64)
def _cached_catalogue(topology: str, seed: int, size: int, capacities: tuple[float, ...],
                      base_delays: tuple[float, ...]) -> Catalogue:
    rng = np.random.default_rng([seed, TOPOLOGIES.index(topology), 0x5EED])
    graphs = tuple(generate(topology, rng, capacities) for _ in range(size))
    bundles = np.array([bundle(g) for g in graphs], dtype=np.int64)
    profiles = [path_profiles(g) for g in graphs]
    width = max(p.shape[0] for p in profiles)
    paths = np.stack([np.concatenate([p, np.repeat(p[:1], width - p.shape[0], axis=0)])
                      for p in profiles]).astype(np.float64)
    base_cp = (paths @ np.asarray(base_delays, dtype=np.float64)).max(axis=1)
    return Catalogue(topology, graphs, bundles, paths, base_cp)


def generate(topology: str, rng: np.random.Generator,
             capacities: tuple[float, ...] = (200.0, 300.0, 500.0)) -> nx.DiGraph:
    """One random service DAG; nodes carry ``tier`` and ``capacity`` (their tier's capacity)."""
    if topology not in GENERATORS:
        raise ValueError(f"unknown topology {topology!r}; choose one of {', '.join(TOPOLOGIES)}")
    g = GENERATORS[topology](rng)
    for v, tier in g.nodes(data="tier"):
        g.nodes[v]["capacity"] = float(capacities[tier])
    return g


def bundle(g: nx.DiGraph) -> tuple[int, int, int]:
    """Capacity units per tier: the number of the DAG's nodes on each tier."""
    counts = [0] * N_TIERS
    for _, tier in g.nodes(data="tier"):
        counts[tier] += 1
    return counts[0], counts[1], counts[2]


def path_profiles(g: nx.DiGraph) -> NDArray[np.int64]:
    """Pareto-maximal per-tier node counts over all source-to-sink paths (one row per profile).

    The critical path under any non-negative tier latencies is attained by one of these rows, so
    they are all a round needs to know about the DAG's paths.
    """
    units = [tuple(int(i == r) for i in range(N_TIERS)) for r in range(N_TIERS)]
    best: dict[int, set[tuple[int, ...]]] = {}
    for v in nx.topological_sort(g):
        unit = units[g.nodes[v]["tier"]]
        incoming = set().union(*(best[u] for u in g.predecessors(v))) or {(0,) * N_TIERS}
        best[v] = _pareto({tuple(x + y for x, y in zip(c, unit, strict=True)) for c in incoming})
    sinks = [v for v in g if g.out_degree(v) == 0]
    return np.array(sorted(_pareto(set().union(*(best[s] for s in sinks)))), dtype=np.int64)


def _pareto(vectors: set[tuple[int, ...]]) -> set[tuple[int, ...]]:
    """Drop every vector that another one dominates component-wise."""
    if len(vectors) < 2:
        return vectors
    return {a for a in vectors
            if not any(b != a and all(x <= y for x, y in zip(a, b, strict=True)) for b in vectors)}


def _chain(g: nx.DiGraph, tiers: list[int]) -> list[int]:
    """Append a path of new nodes with the given tiers; returns their ids."""
    ids = []
    for tier in tiers:
        v = g.number_of_nodes()
        g.add_node(v, tier=tier)
        if ids:
            g.add_edge(ids[-1], v)
        ids.append(v)
    return ids


def _node(g: nx.DiGraph, tier: int) -> int:
    return _chain(g, [tier])[0]


def _one_to_three(rng: np.random.Generator) -> int:
    """1, 2 or 3 with probabilities 1/4, 1/2, 1/4 (mean 2)."""
    return 1 + int(rng.binomial(2, 0.5))


def linear_dag(rng: np.random.Generator) -> nx.DiGraph:
    """Chain of 1-3 device, one edge and 1-3 cloud services (mean bundle 2/1/2)."""
    g = nx.DiGraph()
    _chain(g, [DEVICE] * _one_to_three(rng) + [EDGE] + [CLOUD] * _one_to_three(rng))
    return g


def tree_dag(rng: np.random.Generator) -> nx.DiGraph:
    """Aggregation in-tree: devices -> random edge tree -> cloud chain to the root (mean 2/2/2)."""
    g = nx.DiGraph()
    clouds = _chain(g, [CLOUD] * _one_to_three(rng))
    edges = [_node(g, EDGE)]
    g.add_edge(edges[0], clouds[0])
    for _ in range(_one_to_three(rng) - 1):
        e = _node(g, EDGE)
        g.add_edge(e, edges[int(rng.integers(len(edges)))])
        edges.append(e)
    for i in range(_one_to_three(rng)):
        d = _node(g, DEVICE)
        # The first device feeds the newest edge service, which tends to be the deepest.
        g.add_edge(d, edges[-1] if i == 0 else edges[int(rng.integers(len(edges)))])
    return g


def sp_dag(rng: np.random.Generator) -> nx.DiGraph:
    """Devices -> edge hub -> parallel edge branches -> parallel cloud nodes -> cloud aggregator.

    Mean bundle 2/4/5: 1-3 devices, a hub plus 2-4 branches, 2-4 + 0-2 cloud nodes plus the join.
    """
    g = nx.DiGraph()
    hub = _node(g, EDGE)
    for _ in range(_one_to_three(rng)):
        g.add_edge(_node(g, DEVICE), hub)
    join = _node(g, CLOUD)
    branches = [_node(g, EDGE) for _ in range(1 + _one_to_three(rng))]
    per_branch = np.ones(len(branches), dtype=np.int64)
    np.add.at(per_branch, rng.integers(len(branches), size=int(rng.binomial(2, 0.5))), 1)
    for e, count in zip(branches, per_branch, strict=True):
        g.add_edge(hub, e)
        for _ in range(int(count)):
            c = _node(g, CLOUD)
            g.add_edge(e, c)
            g.add_edge(c, join)
    return g


ENTANGLED_LAYERS = (DEVICE, EDGE, DEVICE, EDGE, CLOUD, CLOUD)
LINK_PROBABILITY = 0.3
SKIP_PROBABILITY = 0.15


def entangled_dag(rng: np.random.Generator) -> nx.DiGraph:
    """Layered DAG device/edge/device/edge/cloud/cloud with crossing links (mean bundle 5/4/3)."""
    g = nx.DiGraph()
    widths = {DEVICE: lambda: 2 + int(rng.random() < 0.5), EDGE: lambda: 2,
              CLOUD: lambda: 1 + int(rng.random() < 0.5)}
    layers = [[_node(g, tier) for _ in range(widths[tier]())] for tier in ENTANGLED_LAYERS]
    for upper, lower in pairwise(layers):
        for v in lower:
            g.add_edge(upper[int(rng.integers(len(upper)))], v)
        for u in upper:
            if g.out_degree(u) == 0:
                g.add_edge(u, lower[int(rng.integers(len(lower)))])
            for v in lower:
                if rng.random() < LINK_PROBABILITY:
                    g.add_edge(u, v)
    for upper, lower in zip(layers, layers[2:], strict=False):
        for u in upper:
            if rng.random() < SKIP_PROBABILITY:
                g.add_edge(u, lower[int(rng.integers(len(lower)))])
    a, b = layers[0][:2]
    c, d = layers[1][:2]
    g.add_edges_from([(a, c), (a, d), (b, d)])
    if g.has_edge(b, c):
        g.remove_edge(b, c)
    return g


GENERATORS: dict[str, Callable[[np.random.Generator], nx.DiGraph]] = {
    "linear": linear_dag, "tree": tree_dag, "sp": sp_dag, "entangled": entangled_dag,
}
