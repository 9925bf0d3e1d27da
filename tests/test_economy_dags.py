"""Service DAGs: bundles and critical paths derived from each DAG, structure per topology."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from mercato.economy.config import TOPOLOGIES
from mercato.economy.dags import bundle, catalogue, generate, path_profiles
from mercato.mechanisms.series_parallel import is_series_parallel

CAPS = (200.0, 300.0, 500.0)
BASE = (5.0, 15.0, 50.0)
# The authors' fixed per-topology bundles; our generators match them on average.
REFERENCE_BUNDLES = {"linear": (2, 1, 2), "tree": (2, 2, 2), "sp": (2, 4, 5), "entangled": (5, 4, 3)}


def longest_path(g: nx.DiGraph, tier_latency: np.ndarray) -> float:
    """Node-weighted longest path by brute force over all source-to-sink paths."""
    sources = [v for v in g if g.in_degree(v) == 0]
    sinks = [v for v in g if g.out_degree(v) == 0]
    best = 0.0
    for s in sources:
        for t in sinks:
            for path in nx.all_simple_paths(g, s, t) if s != t else [[s]]:
                best = max(best, sum(tier_latency[g.nodes[v]["tier"]] for v in path))
    return best


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_critical_path_matches_brute_force_under_random_tier_latencies(topology):
    cat = catalogue(topology, 3, 24, CAPS, BASE)
    rng = np.random.default_rng(0)
    for k, g in enumerate(cat.graphs):
        lat = rng.uniform(1, 300, 3)
        got = cat.critical_path(np.array([k]), lat)[0]
        assert got == pytest.approx(longest_path(g, lat))
        assert tuple(cat.bundles[k]) == bundle(g)
        assert cat.bundles[k].sum() == g.number_of_nodes()


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_mean_bundle_matches_the_reference_profile(topology):
    cat = catalogue(topology, 0, 256, CAPS, BASE)
    assert cat.mean_bundle == pytest.approx(REFERENCE_BUNDLES[topology], abs=0.25)
    # Every template uses all three tiers, so the integrator's tier chain is a series network.
    assert (cat.bundles >= 1).all()


@pytest.mark.parametrize("topology", ["linear", "tree", "sp"])
def test_structured_topologies_are_series_parallel(topology):
    rng = np.random.default_rng(1)
    for _ in range(30):
        g = generate(topology, rng)
        assert nx.is_directed_acyclic_graph(g)
        assert is_series_parallel(g), sorted(g.edges)


def test_entangled_dags_are_not_series_parallel_and_carry_varying_bundles():
    rng = np.random.default_rng(2)
    graphs = [generate("entangled", rng) for _ in range(30)]
    assert not any(is_series_parallel(g) for g in graphs)
    assert len({bundle(g) for g in graphs}) > 1
    # The critical path revisits the device and edge tiers: congestion there counts twice.
    for g in graphs:
        assert any(p[0] >= 2 and p[1] >= 2 for p in path_profiles(g))


def test_path_profiles_keep_only_pareto_maximal_paths():
    g = nx.DiGraph()
    g.add_nodes_from([(0, {"tier": 0}), (1, {"tier": 1}), (2, {"tier": 2}), (3, {"tier": 1}),
                      (4, {"tier": 2})])
    g.add_edges_from([(0, 1), (1, 2), (0, 3), (3, 4), (1, 4), (0, 4)])
    # Paths: 0-1-2, 0-3-4, 0-1-4 (all (1,1,1)) and 0-4 ((1,0,1), dominated).
    assert path_profiles(g).tolist() == [[1, 1, 1]]


def test_catalogue_is_cached_per_seed_and_differs_across_seeds():
    assert catalogue("sp", 5, 16, CAPS, BASE) is catalogue("sp", 5, 16, CAPS, BASE)
    a, b = catalogue("tree", 5, 32, CAPS, BASE), catalogue("tree", 6, 32, CAPS, BASE)
    assert not np.array_equal(a.bundles, b.bundles)


def test_unknown_topology_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown topology 'mesh'"):
        catalogue("mesh", 0, 4, CAPS, BASE)
    with pytest.raises(ValueError, match="catalogue size"):
        catalogue("tree", 0, 0, CAPS, BASE)
