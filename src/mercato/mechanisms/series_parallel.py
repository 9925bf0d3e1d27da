"""Series-parallel recognition and decomposition of service DAGs (paper 003, Proposition 1).

**Series-parallel** means that the *terminal completion* -- a virtual source feeding every source
and a virtual sink fed by every leaf -- reduces to one edge by series and parallel reductions.
Rooted trees are series-parallel in this sense. The paper's induction lets a shared sink be a leaf
of both parallel parts; the completion keeps the agents' side out of the ground set, and under it
the leaf blocks of every series-parallel DAG are laminar (tested, not assumed), which is what makes
its capacity region a polymatroid.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal

import networkx as nx

from mercato.mechanisms.service_dag import checked_topological_order


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
    checked_topological_order(dag, need_capacity=False)
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
