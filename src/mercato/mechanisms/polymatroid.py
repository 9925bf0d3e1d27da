"""Polymatroid structure of service-dependency DAGs (paper 003, Definition 1 and Propositions 1, 3).

A service DAG is an ``nx.DiGraph`` whose nodes carry a positive ``capacity``; an edge ``r -> r'``
says that ``r'`` depends on ``r``. The choices below make the paper's statements precise where its
text leaves room:

* **Leaves** are the sinks (nodes with no outgoing edge): the services agents consume.
* **Leaf block** ``L_v`` is the set of leaves reachable from ``v`` (a leaf's block is itself), and
  every node contributes ``x(L_v) <= C_v``: a throughput token is counted once at every service it
  depends on (a service needs *all* its inputs). Equal blocks merge into one constraint with the
  smallest capacity. The region ``{x >= 0 : x(L_v) <= C_v}`` is a :class:`CapacityRegion`.
* **Series-parallel** means that the *terminal completion* -- a virtual source feeding every
  source and a virtual sink fed by every leaf -- reduces to one edge by series and parallel
  reductions. Rooted trees are series-parallel in this sense. The paper's induction lets a shared
  sink be a leaf of both parallel parts; the completion keeps the agents' side out of the ground
  set, and under it the leaf blocks of every series-parallel DAG are laminar (tested, not assumed).
* **Rank.** For any region, ``f(S) = max{x(S) : x in region}`` (a linear programme). When the
  blocks are laminar this equals the paper's Eq. (8), a cheapest cover of ``S`` by an antichain of
  blocks, computed here by a bottom-up pass over the laminar forest.
* **Polymatroid check.** A 0/1 packing region always equals ``P(f)`` for its own rank ``f``
  (``f(L_v) <= C_v`` gives back every constraint), so it is a polymatroid exactly when ``f`` is
  submodular. Laminar blocks make that certain (Proposition 1); otherwise the check enumerates all
  ``2^n`` leaf sets and returns a witness of the failure (an entangled DAG fails).
* **Encapsulation** (Proposition 3) contracts each integrator's cluster of non-leaf nodes into
  one slice node whose capacity is the maximum flow of the cluster's sub-DAG (node capacities by
  node splitting, from its own sources to its own sinks); the agent-facing region is the region
  of the quotient graph.

The rank-table helpers at the bottom (one value per subset, indexed by bitmask) are plain numpy
and serve both the DAG check here and the clinching auction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Literal

import networkx as nx
import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linprog

CAPACITY = "capacity"

# Rank values are capacities (O(1)-O(1e3)); differences below this are float noise from the LP.
RANK_TOLERANCE = 1e-9


@dataclass(frozen=True)
class CapacityRegion:
    """The region ``{x >= 0 : x(blocks[k]) <= capacities[k] for all k}`` over the leaf services.

    ``owners[k]`` names the DAG nodes whose constraint is block k (several when blocks coincide).
    :func:`capacity_region` also indexes a laminar family's forest (``_children``), which lets
    :meth:`rank` use Eq. (8) instead of a linear programme.
    """

    leaves: tuple[Hashable, ...]
    blocks: tuple[frozenset[Hashable], ...]
    capacities: tuple[float, ...]
    owners: tuple[tuple[Hashable, ...], ...]
    _children: tuple[tuple[int, ...], ...] | None = field(default=None, repr=False, compare=False)

    def crossing(self) -> tuple[int, int] | None:
        """Indices of the first two blocks that overlap without one containing the other."""
        for a, b in combinations(range(len(self.blocks)), 2):
            x, y = self.blocks[a], self.blocks[b]
            if x & y and not (x <= y or y <= x):
                return a, b
        return None

    @property
    def laminar(self) -> bool:
        """True when every two blocks are nested or disjoint (Proposition 1's condition)."""
        return self.crossing() is None

    def rank(self, subset: Iterable[Hashable]) -> float:
        """``f(S)``: the largest total throughput the leaves in ``subset`` can get together."""
        chosen = self._validated(subset)
        if not chosen:
            return 0.0
        if self._children is None:
            return self._lp_rank(chosen)
        return self._laminar_rank(chosen)

    def lp_rank(self, subset: Iterable[Hashable]) -> float:
        """``f(S)`` by linear programming, whatever the blocks; the oracle for :meth:`rank`."""
        chosen = self._validated(subset)
        return self._lp_rank(chosen) if chosen else 0.0

    def rank_table(self, max_leaves: int = 12) -> NDArray[np.float64]:
        """``f`` on all ``2^n`` leaf sets; bit i of the index stands for ``leaves[i]``."""
        n = len(self.leaves)
        if n > max_leaves:
            raise ValueError(f"a rank table over {n} leaves has 2^{n} entries; the limit is "
                             f"max_leaves={max_leaves}")
        return rank_table(lambda s: self.rank(self.leaves[i] for i in s), n)

    def _validated(self, subset: Iterable[Hashable]) -> frozenset[Hashable]:
        chosen = frozenset(subset)
        unknown = chosen.difference(self.leaves)
        if unknown:
            raise ValueError(f"not leaf services of this region: {sorted(map(repr, unknown))}")
        return chosen

    def _laminar_rank(self, chosen: frozenset[Hashable]) -> float:
        # Blocks are stored smallest first, so children are priced before their parents.
        assert self._children is not None
        cost = np.zeros(len(self.blocks))
        for k, block in enumerate(self.blocks):
            if not block & chosen:
                continue
            kids = self._children[k]
            cost[k] = self.capacities[k] if not kids else min(self.capacities[k], cost[list(kids)].sum())
        roots = [k for k in range(len(self.blocks)) if not any(k in c for c in self._children)]
        return float(cost[roots].sum())

    def _lp_rank(self, chosen: frozenset[Hashable]) -> float:
        cols = [leaf for leaf in self.leaves if leaf in chosen]
        a = np.array([[leaf in block for leaf in cols] for block in self.blocks], dtype=np.float64)
        res = linprog(-np.ones(len(cols)), A_ub=a, b_ub=np.array(self.capacities),
                      bounds=(0, None), method="highs")
        if res.status != 0:
            raise RuntimeError(f"rank LP failed: {res.message}")
        return float(-res.fun)


def capacity_region(dag: nx.DiGraph) -> CapacityRegion:
    """Definition 1's feasibility region of a service DAG (any DAG, laminar or not)."""
    order = _checked_order(dag, need_capacity=True)
    leaves = tuple(v for v in dag if dag.out_degree(v) == 0)
    reach: dict[Hashable, frozenset[Hashable]] = {}
    for v in reversed(order):
        succ = [reach[w] for w in dag.successors(v)]
        reach[v] = frozenset().union(*succ) if succ else frozenset([v])
    merged: dict[frozenset[Hashable], tuple[float, list[Hashable]]] = {}
    for v in dag:
        cap, owners = merged.get(reach[v], (math.inf, []))
        merged[reach[v]] = (min(cap, float(dag.nodes[v][CAPACITY])), [*owners, v])
    # Smallest blocks first: the laminar rank prices children before parents.
    items = sorted(merged.items(), key=lambda kv: len(kv[0]))
    blocks = tuple(b for b, _ in items)
    region = CapacityRegion(leaves=leaves, blocks=blocks,
                            capacities=tuple(c for _, (c, _) in items),
                            owners=tuple(tuple(o) for _, (_, o) in items))
    if region.crossing() is not None:
        return region
    children = tuple(
        tuple(j for j in range(k) if blocks[j] < blocks[k]
              and not any(blocks[j] < blocks[i] < blocks[k] for i in range(k)))
        for k in range(len(blocks)))
    return CapacityRegion(region.leaves, blocks, region.capacities, region.owners, children)


def laminar_family(dag: nx.DiGraph) -> CapacityRegion:
    """The laminar leaf-block family of a tree or series-parallel DAG; ValueError if it crosses."""
    region = capacity_region(dag)
    pair = region.crossing()
    if pair is not None:
        a, b = pair
        raise ValueError(
            f"leaf blocks are not laminar: {_describe_block(region, a)} and "
            f"{_describe_block(region, b)} overlap without nesting")
    return region


@dataclass(frozen=True)
class PolymatroidCheck:
    """Whether a DAG's feasible region is a polymatroid, and the evidence either way.

    ``method`` is ``"laminar"`` when Proposition 1 settles it, ``"exhaustive"`` when every leaf set
    was ranked; ``crossing`` names two crossing blocks, ``violation`` the failed inequality.
    """

    polymatroidal: bool
    laminar: bool
    method: Literal["laminar", "exhaustive"]
    crossing: tuple[frozenset[Hashable], frozenset[Hashable]] | None
    violation: str | None


def check_polymatroid(dag: nx.DiGraph, max_leaves: int = 12) -> PolymatroidCheck:
    """Decide whether Definition 1's region of ``dag`` is a polymatroid.

    Laminar blocks settle it at once. Otherwise the exact rank of every leaf set is computed by LP
    and tested for submodularity; crossing blocks with slack capacities can still give a
    polymatroid, so crossing alone is not a verdict. Raises ValueError beyond ``max_leaves``.
    """
    region = capacity_region(dag)
    pair = region.crossing()
    if pair is None:
        return PolymatroidCheck(True, True, "laminar", None, None)
    table = region.rank_table(max_leaves)
    bad = rank_violation(table)
    return PolymatroidCheck(
        polymatroidal=bad is None, laminar=False, method="exhaustive",
        crossing=(region.blocks[pair[0]], region.blocks[pair[1]]),
        violation=None if bad is None else bad.describe(region.leaves))


# --- series-parallel recognition and decomposition ------------------------------------------


@dataclass(frozen=True)
class Terminal:
    """A virtual terminal of the completion; never equal to a user's node."""

    name: str

    def __repr__(self) -> str:
        return f"<{self.name}>"


SOURCE = Terminal("source")
SINK = Terminal("sink")


@dataclass(frozen=True)
class SPTree:
    """A series-parallel decomposition tree: an edge, or a series / parallel composition.

    Series children are in path order (each child's sink is the next one's source); parallel
    children share this node's source and sink. Nested compositions of one kind are flattened.
    """

    kind: Literal["edge", "series", "parallel"]
    source: Hashable
    sink: Hashable
    children: tuple[SPTree, ...] = ()

    def edges(self) -> list[tuple[Hashable, Hashable]]:
        """The graph edges this tree composes, each once."""
        if self.kind == "edge":
            return [(self.source, self.sink)]
        return [e for child in self.children for e in child.edges()]


def completion(dag: nx.DiGraph) -> nx.DiGraph:
    """``dag`` plus :data:`SOURCE` before every source and :data:`SINK` after every leaf."""
    _checked_order(dag, need_capacity=False)
    out = nx.DiGraph(dag.edges)
    out.add_nodes_from(dag)
    out.add_edges_from((SOURCE, v) for v in dag if dag.in_degree(v) == 0)
    out.add_edges_from((v, SINK) for v in dag if dag.out_degree(v) == 0)
    return out


def sp_decomposition(dag: nx.DiGraph) -> SPTree | None:
    """Decomposition tree of the terminal completion, or None when ``dag`` is not series-parallel.

    Series reductions (a non-terminal node with one edge in and one out) and parallel reductions
    (merging edges with the same ends) are confluent, so the graph is series-parallel exactly when
    they leave the single edge ``SOURCE -> SINK``.
    """
    g = nx.MultiDiGraph()
    for u, v in completion(dag).edges:
        g.add_edge(u, v, tree=SPTree("edge", u, v))
    changed = True
    while changed:
        changed = False
        for u, v in list(dict.fromkeys(g.edges())):
            if g.number_of_edges(u, v) > 1:
                parts = [d["tree"] for d in g.get_edge_data(u, v).values()]
                g.remove_edges_from([(u, v)] * len(parts))
                g.add_edge(u, v, tree=_compose("parallel", u, v, parts))
                changed = True
        for w in list(g.nodes):
            if w in (SOURCE, SINK) or g.in_degree(w) != 1 or g.out_degree(w) != 1:
                continue
            (u, _, first), = g.in_edges(w, data="tree")
            (_, v, second), = g.out_edges(w, data="tree")
            g.remove_node(w)
            g.add_edge(u, v, tree=_compose("series", u, v, [first, second]))
            changed = True
    if g.number_of_edges() == 1 and g.has_edge(SOURCE, SINK):
        return next(iter(g.get_edge_data(SOURCE, SINK).values()))["tree"]
    return None


def is_series_parallel(dag: nx.DiGraph) -> bool:
    """True when the terminal completion of ``dag`` is a two-terminal series-parallel network."""
    return sp_decomposition(dag) is not None


def _compose(kind: Literal["series", "parallel"], source: Hashable, sink: Hashable,
             parts: list[SPTree]) -> SPTree:
    flat = [c for p in parts for c in (p.children if p.kind == kind else (p,))]
    return SPTree(kind, source, sink, tuple(flat))


# --- encapsulation by integrators (Proposition 3) -------------------------------------------


@dataclass(frozen=True)
class Encapsulation:
    """The agent-facing market after integrators contract their clusters.

    ``quotient`` has one node per cluster (capacity = max-flow of its sub-DAG, listed in
    ``slice_capacity``) plus every node no cluster absorbed. ``series_parallel`` says whether the
    quotient is a tree or series-parallel, i.e. whether Proposition 3 promises a polymatroid.
    """

    quotient: nx.DiGraph
    slice_capacity: dict[Hashable, float]
    region: CapacityRegion
    series_parallel: bool


def max_flow_capacity(dag: nx.DiGraph, nodes: Iterable[Hashable]) -> float:
    """Maximum flow through the sub-DAG on ``nodes``, from its sources to its sinks.

    Each node v is split into ``v_in -> v_out`` with capacity ``C_v``; edges inside the sub-DAG
    and the arcs from a super-source and to a super-sink are uncapacitated.
    """
    members = list(dict.fromkeys(nodes))
    _checked_order(dag, need_capacity=True)
    missing = [v for v in members if v not in dag]
    if missing:
        raise ValueError(f"nodes not in the DAG: {missing}")
    if not members:
        raise ValueError("a sub-DAG needs at least one node")
    sub = dag.subgraph(members)
    net = nx.DiGraph()
    for v in members:
        net.add_edge(("in", v), ("out", v), capacity=float(dag.nodes[v][CAPACITY]))
        if sub.in_degree(v) == 0:
            net.add_edge(SOURCE, ("in", v))
        if sub.out_degree(v) == 0:
            net.add_edge(("out", v), SINK)
    net.add_edges_from((("out", u), ("in", v)) for u, v in sub.edges)
    return float(nx.maximum_flow_value(net, SOURCE, SINK))


def encapsulate(dag: nx.DiGraph, clusters: Mapping[Hashable, Iterable[Hashable]]) -> Encapsulation:
    """Contract each named cluster of non-leaf nodes into one slice node (Proposition 3).

    Raises ValueError when a cluster is empty, overlaps another, holds a leaf or an unknown node,
    is not connected, reuses the name of a node it does not absorb, or makes the quotient cyclic.
    """
    _checked_order(dag, need_capacity=True)
    owner: dict[Hashable, Hashable] = {}
    groups = {name: list(dict.fromkeys(members)) for name, members in clusters.items()}
    for name, members in groups.items():
        if not members:
            raise ValueError(f"cluster {name!r} is empty")
        for v in members:
            if v not in dag:
                raise ValueError(f"cluster {name!r}: node {v!r} is not in the DAG")
            if dag.out_degree(v) == 0:
                raise ValueError(f"cluster {name!r}: {v!r} is a leaf service; integrators contract "
                                 "only non-leaf nodes")
            if v in owner:
                raise ValueError(f"node {v!r} is in both cluster {owner[v]!r} and {name!r}")
            owner[v] = name
        if not nx.is_weakly_connected(dag.subgraph(members)):
            raise ValueError(f"cluster {name!r} is not a connected sub-DAG")
    for name in groups:
        if name in dag and owner.get(name) != name:
            raise ValueError(f"cluster name {name!r} is already a node outside that cluster")
    slice_capacity = {name: max_flow_capacity(dag, members) for name, members in groups.items()}
    quotient = nx.DiGraph()
    for v in dag:
        if v not in owner:
            quotient.add_node(v, **{CAPACITY: dag.nodes[v][CAPACITY]})
    for name, cap in slice_capacity.items():
        quotient.add_node(name, **{CAPACITY: cap})
    quotient.add_edges_from((owner.get(u, u), owner.get(v, v)) for u, v in dag.edges
                            if owner.get(u, u) != owner.get(v, v))
    if not nx.is_directed_acyclic_graph(quotient):
        cycle = nx.find_cycle(quotient)
        raise ValueError(f"contracting the clusters creates a cycle: {cycle}")
    return Encapsulation(quotient=quotient, slice_capacity=slice_capacity,
                         region=capacity_region(quotient),
                         series_parallel=is_series_parallel(quotient))


def _checked_order(dag: nx.DiGraph, *, need_capacity: bool) -> list[Hashable]:
    """Topological order of a validated service DAG; ValueError naming what is wrong."""
    if not isinstance(dag, nx.DiGraph) or dag.is_multigraph():
        raise ValueError(f"a service DAG must be a networkx DiGraph, got {type(dag).__name__}")
    if dag.number_of_nodes() == 0:
        raise ValueError("the service DAG has no nodes")
    if not nx.is_directed_acyclic_graph(dag):
        raise ValueError(f"the service graph has a cycle: {nx.find_cycle(dag)}")
    if need_capacity:
        for v, cap in dag.nodes(data=CAPACITY):
            if cap is None:
                raise ValueError(f"node {v!r} has no {CAPACITY!r} attribute")
            if not isinstance(cap, int | float) or not math.isfinite(cap) or cap <= 0:
                raise ValueError(f"node {v!r} needs a positive finite capacity, got {cap!r}")
    return list(nx.topological_sort(dag))


def _describe_block(region: CapacityRegion, k: int) -> str:
    leaves = sorted(map(repr, region.blocks[k]))
    return f"L({', '.join(map(repr, region.owners[k]))}) = {{{', '.join(leaves)}}}"


# --- rank tables: a set function stored as one value per subset (bit i = element i) ---------


@dataclass(frozen=True)
class RankViolation:
    """A failed polymatroid axiom: ``f(base + added) ... `` falls short by ``gap``."""

    axiom: Literal["normalised", "monotone", "submodular"]
    base: frozenset[int]
    added: tuple[int, ...]
    gap: float

    def describe(self, names: tuple[Hashable, ...] | None = None) -> str:
        """Human-readable statement of the failed inequality, with element ``names`` if given."""
        def name(i: int) -> str:
            return repr(names[i]) if names is not None else str(i)

        base = "{" + ", ".join(sorted(name(i) for i in self.base)) + "}"
        if self.axiom == "normalised":
            return f"f({{}}) = {self.gap:g}, not 0"
        if self.axiom == "monotone":
            return f"f(S + {name(self.added[0])}) < f(S) by {self.gap:g} for S = {base}"
        i, j = (name(a) for a in self.added)
        return (f"f(S + {i}) + f(S + {j}) < f(S + {i} + {j}) + f(S) by {self.gap:g} "
                f"for S = {base}")


def rank_table(rank: Callable[[frozenset[int]], float], size: int) -> NDArray[np.float64]:
    """Evaluate a set function on every subset of ``range(size)``; ValueError on bad values."""
    if size < 0:
        raise ValueError(f"the ground set size must be non-negative, got {size}")
    table = np.empty(1 << size)
    for mask in range(1 << size):
        value = rank(frozenset(i for i in range(size) if mask >> i & 1))
        try:
            table[mask] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"rank must return a number, got {value!r}") from None
    if not np.isfinite(table).all():
        mask = int(np.argmax(~np.isfinite(table)))
        raise ValueError(f"rank is not finite on subset {_members(mask)}")
    return table


def rank_violation(table: NDArray[np.float64], tol: float = RANK_TOLERANCE) -> RankViolation | None:
    """First polymatroid axiom (normalised, monotone, submodular) that ``table`` breaks, or None."""
    size = _table_size(table)
    if abs(table[0]) > tol:
        return RankViolation("normalised", frozenset(), (), float(table[0]))
    masks = np.arange(table.size)
    for i in range(size):
        base = masks[(masks >> i & 1) == 0]
        drop = table[base] - table[base | 1 << i]
        if (drop > tol).any():
            k = int(np.argmax(drop))
            return RankViolation("monotone", _members(int(base[k])), (i,), float(drop[k]))
    for i, j in combinations(range(size), 2):
        base = masks[((masks >> i & 1) == 0) & ((masks >> j & 1) == 0)]
        gap = table[base | 1 << i | 1 << j] + table[base] - table[base | 1 << i] - table[base | 1 << j]
        if (gap > tol).any():
            k = int(np.argmax(gap))
            return RankViolation("submodular", _members(int(base[k])), (i, j), float(gap[k]))
    return None


def subset_sums(weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """``w(S)`` for every subset S of the elements, in bitmask order."""
    masks = np.arange(1 << weights.size)
    bits = (masks[:, None] >> np.arange(weights.size)) & 1
    return bits @ weights.astype(np.float64)


def superset_min(table: NDArray[np.float64]) -> NDArray[np.float64]:
    """``min over T containing S of table[T]`` for every S (one pass per element)."""
    out = table.copy()
    masks = np.arange(out.size)
    for i in range(_table_size(out)):
        base = masks[(masks >> i & 1) == 0]
        out[base] = np.minimum(out[base], out[base | 1 << i])
    return out


def _table_size(table: NDArray[np.float64]) -> int:
    size = int(table.size).bit_length() - 1
    if table.ndim != 1 or table.size != 1 << size:
        raise ValueError(f"a rank table needs 2^k entries in one dimension, got shape {table.shape}")
    return size


def _members(mask: int) -> frozenset[int]:
    return frozenset(i for i in range(mask.bit_length()) if mask >> i & 1)
