"""Encapsulation by integrators (paper 003, Proposition 3): the market agents see after contraction.

An integrator contracts its cluster of non-leaf nodes into one slice node whose capacity is the
maximum flow of the cluster's sub-DAG (node capacities by node splitting, from its own sources to
its own sinks); the agent-facing region is the capacity region of the quotient graph, which
Proposition 3 promises is a polymatroid when the quotient is a tree or series-parallel.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

import networkx as nx

from mercato.mechanisms.polymatroid import CapacityRegion, capacity_region
from mercato.mechanisms.series_parallel import SINK, SOURCE, is_series_parallel
from mercato.mechanisms.service_dag import CAPACITY, checked_topological_order


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
    checked_topological_order(dag, need_capacity=True)
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
    checked_topological_order(dag, need_capacity=True)
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
