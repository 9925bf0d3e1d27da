"""Polymatroid tools: laminarity and submodularity on random trees and series-parallel DAGs, the
check failing on entangled DAGs, SP decomposition, max-flow encapsulation, rank tables."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.mechanisms.encapsulation import encapsulate, max_flow_capacity
from mercato.mechanisms.polymatroid import capacity_region, check_polymatroid, laminar_family
from mercato.mechanisms.rank_tables import rank_table, rank_violation, subset_sums, superset_min
from mercato.mechanisms.series_parallel import SINK, SOURCE, completion, is_series_parallel, sp_decomposition


def with_capacities(g: nx.DiGraph, rng: np.random.Generator) -> nx.DiGraph:
    for v in g:
        g.nodes[v]["capacity"] = int(rng.integers(1, 10))
    return g


def random_tree(seed: int, size: int) -> nx.DiGraph:
    """A rooted out-tree: each new node hangs below a random earlier one."""
    rng = np.random.default_rng(seed)
    g = nx.DiGraph()
    g.add_node(0)
    for v in range(1, size):
        g.add_edge(int(rng.integers(0, v)), v)
    return with_capacities(g, rng)


def random_sp(seed: int, steps: int) -> nx.DiGraph:
    """Two-terminal SP network grown by series / parallel expansions, sink removed (agents' side)."""
    rng = np.random.default_rng(seed)
    g = nx.DiGraph([("s", "t")])
    for new in range(steps):
        u, v = list(g.edges)[rng.integers(g.number_of_edges())]
        if rng.random() < 0.5:
            g.remove_edge(u, v)
        g.add_edges_from([(u, new), (new, v)])
    g.remove_node("t")
    return with_capacities(g, rng)


def entangled() -> nx.DiGraph:
    """Device -> edge -> cloud with cross-cutting ties: L(e1) and L(e2) cross on c2."""
    g = nx.DiGraph([("d1", "e1"), ("d1", "e2"), ("d2", "e2"),
                    ("e1", "c1"), ("e1", "c2"), ("e2", "c2"), ("e2", "c3")])
    nx.set_node_attributes(g, dict(d1=4, d2=3, e1=2, e2=5, c1=2, c2=2, c3=2), "capacity")
    return g


def assert_polymatroid(g: nx.DiGraph) -> None:
    region = laminar_family(g)
    assert region.crossing() is None and region.laminar
    table = region.rank_table()
    assert rank_violation(table) is None
    lp = rank_table(lambda s: region.lp_rank(region.leaves[i] for i in s), len(region.leaves))
    np.testing.assert_allclose(table, lp, atol=1e-7)
    check = check_polymatroid(g)
    assert check.polymatroidal and check.method == "laminar"


@settings(max_examples=120)
@given(st.sampled_from([random_tree, random_sp]), st.integers(0, 2**32 - 1), st.integers(1, 10))
def test_random_trees_and_sp_dags_are_laminar_and_submodular(make, seed, size):
    g = make(seed, size)
    assert is_series_parallel(g)
    assert_polymatroid(g)


def test_entangled_dag_fails_the_check_with_a_witness():
    g = entangled()
    assert not is_series_parallel(g)
    check = check_polymatroid(g)
    assert not check.polymatroidal and not check.laminar and check.method == "exhaustive"
    assert check.crossing == (frozenset({"c1", "c2"}), frozenset({"c2", "c3"}))
    assert "f(S + 'c1') + f(S + 'c3') < f(S + 'c1' + 'c3') + f(S)" in check.violation
    region = capacity_region(g)
    # The witness: c1 adds nothing to {c2} but adds 1 to {c2, c3} -- increasing returns.
    assert region.rank({"c1", "c2"}) - region.rank({"c2"}) == 0
    assert region.rank({"c1", "c2", "c3"}) - region.rank({"c2", "c3"}) == 1
    with pytest.raises(ValueError, match="not laminar"):
        laminar_family(g)


def test_crossing_blocks_with_slack_capacity_can_still_be_polymatroidal():
    g = entangled()
    nx.set_node_attributes(g, dict(d1=50, d2=50, e1=50, e2=50), "capacity")
    check = check_polymatroid(g)
    assert not check.laminar and check.polymatroidal and check.violation is None


def test_check_refuses_too_many_leaves_for_exhaustive_search():
    g = entangled()
    with pytest.raises(ValueError, match="max_leaves=2"):
        check_polymatroid(g, max_leaves=2)


def test_tree_rank_is_the_cheapest_antichain_cover():
    g = nx.DiGraph([("r", "a"), ("r", "b"), ("a", "x"), ("a", "y"), ("b", "z")])
    nx.set_node_attributes(g, dict(r=5, a=3, b=4, x=2, y=2, z=9), "capacity")
    region = laminar_family(g)
    assert region.rank([]) == 0
    assert region.rank(["x"]) == 2
    assert region.rank(["x", "y"]) == 3          # a's cap 3 beats x + y = 4
    assert region.rank(["x", "z"]) == 5          # root cap 5 beats 2 + 4
    assert region.rank(["z"]) == 4               # b (4) beats z (9)
    with pytest.raises(ValueError, match="not leaf services"):
        region.rank(["a"])


def test_sp_decomposition_composes_exactly_the_completed_graph():
    g = random_sp(7, 8)
    tree = sp_decomposition(g)
    assert tree is not None and (tree.source, tree.sink) == (SOURCE, SINK)
    assert sorted(map(repr, tree.edges())) == sorted(map(repr, completion(g).edges))

    def check(node):
        if node.kind == "series":
            assert node.children[0].source == node.source and node.children[-1].sink == node.sink
            assert all(a.sink == b.source for a, b in itertools.pairwise(node.children))
        if node.kind == "parallel":
            assert all((c.source, c.sink) == (node.source, node.sink) for c in node.children)
        for c in node.children:
            assert c.kind != node.kind
            check(c)

    check(tree)


def test_wheatstone_bridge_is_not_series_parallel():
    g = nx.DiGraph([("s", "a"), ("s", "b"), ("a", "b"), ("a", "t"), ("b", "t")])
    assert sp_decomposition(g) is None
    assert is_series_parallel(nx.DiGraph([("s", "a"), ("s", "b"), ("a", "t"), ("b", "t")]))


def test_max_flow_of_a_diamond_uses_both_branches():
    g = nx.DiGraph([("s", "a"), ("s", "b"), ("a", "m"), ("b", "m"), ("m", "leaf")])
    nx.set_node_attributes(g, dict(s=10, a=3, b=4, m=9, leaf=1), "capacity")
    assert max_flow_capacity(g, ["s", "a", "b", "m"]) == 7
    g.nodes["m"]["capacity"] = 5
    assert max_flow_capacity(g, ["s", "a", "b", "m"]) == 5


def test_encapsulating_the_entangled_core_restores_a_polymatroid():
    enc = encapsulate(entangled(), {"I": ["d1", "d2", "e1", "e2"]})
    assert enc.slice_capacity == {"I": 7.0}       # d1 + d2 = 7 enters, e1 + e2 = 7 leaves
    assert enc.series_parallel
    assert sorted(enc.quotient.edges) == [("I", "c1"), ("I", "c2"), ("I", "c3")]
    assert enc.region.rank({"c1", "c2", "c3"}) == 6
    assert check_polymatroid(enc.quotient).polymatroidal


@pytest.mark.parametrize(("clusters", "message"), [
    ({"I": []}, "is empty"),
    ({"I": ["c1"]}, "is a leaf service"),
    ({"I": ["d1"], "J": ["d1"]}, "in both cluster"),
    ({"I": ["nope"]}, "not in the DAG"),
    ({"c1": ["d1"]}, "already a node"),
    ({"I": ["d1", "d2"]}, "not a connected"),
])
def test_bad_clusters_are_rejected(clusters, message):
    with pytest.raises(ValueError, match=message):
        encapsulate(entangled(), clusters)


def test_contraction_that_creates_a_cycle_is_rejected():
    g = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "leaf")])
    nx.set_node_attributes(g, 1, "capacity")
    g.add_edge("a", "c")
    with pytest.raises(ValueError, match="cycle"):
        encapsulate(g, {"I": ["a", "c"]})


@pytest.mark.parametrize(("graph", "message"), [
    (nx.DiGraph([(1, 2), (2, 1)]), "cycle"),
    (nx.DiGraph(), "no nodes"),
    (nx.Graph([(1, 2)]), "DiGraph"),
])
def test_bad_graphs_are_rejected(graph, message):
    nx.set_node_attributes(graph, 1, "capacity")
    with pytest.raises(ValueError, match=message):
        capacity_region(graph)


@pytest.mark.parametrize(("capacity", "message"), [(None, "no 'capacity'"), (-1, "positive finite"),
                                                   (float("inf"), "positive finite"), ("3", "positive")])
def test_bad_capacities_are_rejected(capacity, message):
    g = nx.DiGraph([("a", "b")])
    g.nodes["a"]["capacity"] = 1
    if capacity is not None:
        g.nodes["b"]["capacity"] = capacity
    with pytest.raises(ValueError, match=message):
        capacity_region(g)


def test_rank_violation_names_each_broken_axiom():
    assert rank_violation(np.array([0.0, 1, 1, 2])) is None          # modular
    assert rank_violation(np.array([1.0, 1, 1, 2])).axiom == "normalised"
    bad = rank_violation(np.array([0.0, 2, 1, 1]))                    # f({0,1}) < f({0})
    assert bad.axiom == "monotone" and bad.added == (1,) and bad.base == frozenset({0})
    bad = rank_violation(np.array([0.0, 1, 1, 3]))                    # supermodular pair
    assert bad.axiom == "submodular" and bad.added == (0, 1) and bad.gap == pytest.approx(1)
    assert "f(S + 0) + f(S + 1) < f(S + 0 + 1) + f(S)" in bad.describe()
    with pytest.raises(ValueError, match="2\\^k entries"):
        rank_violation(np.zeros(3))


def test_rank_table_rejects_non_numbers():
    with pytest.raises(ValueError, match="must return a number"):
        rank_table(lambda s: "x", 1)
    with pytest.raises(ValueError, match="not finite"):
        rank_table(lambda s: float("inf") if s else 0.0, 2)


@given(st.integers(0, 2**32 - 1), st.integers(0, 5))
def test_superset_min_and_subset_sums_match_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    table = rng.normal(size=1 << k)
    weights = rng.normal(size=k)
    low = superset_min(table)
    sums = subset_sums(weights)
    for s in range(1 << k):
        assert low[s] == min(table[t] for t in range(1 << k) if t & s == s)
        assert sums[s] == pytest.approx(sum(weights[i] for i in range(k) if s >> i & 1))
