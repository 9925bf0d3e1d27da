"""Polymatroid structure of service-dependency DAGs (paper 003, Definition 1 and Proposition 1).

A service DAG (:mod:`~mercato.mechanisms.service_dag`) offers its leaf services a capacity region;
this module builds that region and decides whether it is a polymatroid. The choices below make the
paper's statements precise where its text leaves room:

* **Leaves** are the sinks (nodes with no outgoing edge): the services agents consume.
* **Leaf block** ``L_v`` is the set of leaves reachable from ``v`` (a leaf's block is itself), and
  every node contributes ``x(L_v) <= C_v``: a throughput token is counted once at every service it
  depends on (a service needs *all* its inputs). Equal blocks merge into one constraint with the
  smallest capacity. The region ``{x >= 0 : x(L_v) <= C_v}`` is a :class:`CapacityRegion`.
* **Rank.** For any region, ``f(S) = max{x(S) : x in region}`` (a linear programme). When the
  blocks are laminar this equals the paper's Eq. (8), a cheapest cover of ``S`` by an antichain of
  blocks, computed here by a bottom-up pass over the laminar forest.
* **Polymatroid check.** A 0/1 packing region always equals ``P(f)`` for its own rank ``f``
  (``f(L_v) <= C_v`` gives back every constraint), so it is a polymatroid exactly when ``f`` is
  submodular. Laminar blocks make that certain (Proposition 1; trees and series-parallel DAGs,
  :mod:`~mercato.mechanisms.series_parallel`, have them); otherwise the check enumerates all
  ``2^n`` leaf sets (:mod:`~mercato.mechanisms.rank_tables`) and returns a witness of the failure
  (an entangled DAG fails). Encapsulation (Proposition 3) is in
  :mod:`~mercato.mechanisms.encapsulation`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Literal

import networkx as nx
import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linprog

from mercato.mechanisms.rank_tables import rank_table, rank_violation
from mercato.mechanisms.service_dag import CAPACITY, checked_topological_order


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
    order = checked_topological_order(dag, need_capacity=True)
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


def _describe_block(region: CapacityRegion, k: int) -> str:
    leaves = sorted(map(repr, region.blocks[k]))
    return f"L({', '.join(map(repr, region.owners[k]))}) = {{{', '.join(leaves)}}}"
