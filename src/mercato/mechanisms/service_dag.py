"""What a service DAG is, and the validation every tool on one runs first.

A service DAG is an ``nx.DiGraph`` whose nodes carry a positive ``capacity``; an edge ``r -> r'``
says that ``r'`` depends on ``r``. The capacity region (:mod:`~mercato.mechanisms.polymatroid`),
the series-parallel test (:mod:`~mercato.mechanisms.series_parallel`) and encapsulation
(:mod:`~mercato.mechanisms.encapsulation`) share this one check so that they reject the same
graphs with the same messages.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import networkx as nx

CAPACITY = "capacity"


def checked_topological_order(dag: nx.DiGraph, *, need_capacity: bool) -> list[Hashable]:
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
