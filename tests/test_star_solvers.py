"""The three exact solvers agree with each other, with brute force and with the paper's Eq. 2."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.mechanisms.workflow import Agent, Node, Workflow, WorkflowMarket, allocate, make_solver
from mercato.mechanisms.workflow.solve import JUNCTION_TREE_MAX_TABLE
from test_star_helpers import brute_force, random_agents, random_workflow


def paper_objective(market: WorkflowMarket, assignment: np.ndarray, phi: np.ndarray) -> float:
    """Eq. 2-3 written out node by node and edge by edge (plus external input and kappa)."""
    wf = market.workflow
    total = 0.0
    for v, node in enumerate(wf.nodes):
        i = assignment[v]
        agent = market.agents[i]
        total += phi[i] * (node.output_tokens + agent.input_ratio * wf.external_input[v])
    for e in wf.edges:
        i, j = assignment[wf.index[e.source]], assignment[wf.index[e.target]]
        agent = market.agents[j]
        read = e.tokens if i != j else agent.cached_discount * e.tokens
        total += phi[j] * agent.input_ratio * read
    return total


def objectives(market: WorkflowMarket, phi: np.ndarray) -> dict[str, float]:
    methods = (["tree"] if market.workflow.is_forest() else []) + ["junction_tree", "milp"]
    return {m: market.objective(allocate(market, phi, make_solver(market, m)), phi) for m in methods}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), tree=st.booleans())
def test_solvers_agree_with_brute_force_on_tiny_instances(seed, tree):
    rng = np.random.default_rng(seed)
    market = WorkflowMarket(random_workflow(rng, int(rng.integers(1, 6)), tree=tree), random_agents(rng))
    phi = rng.uniform(0.2, 3.0, market.n_agents)
    best = brute_force(market, phi)
    for method, value in objectives(market, phi).items():
        assert value == pytest.approx(best, rel=1e-9, abs=1e-9), method


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), tree=st.booleans())
def test_solvers_agree_on_larger_random_dags_and_trees(seed, tree):
    rng = np.random.default_rng(seed)
    market = WorkflowMarket(random_workflow(rng, int(rng.integers(8, 20)), density=0.15, tree=tree),
                            random_agents(rng, (1, 1, 1, 2, 2, 3, 3)))
    phi = rng.uniform(0.2, 3.0, market.n_agents)
    values = objectives(market, phi)
    assert max(values.values()) == pytest.approx(min(values.values()), rel=1e-9)


def test_objective_is_the_papers_equation():
    rng = np.random.default_rng(5)
    market = WorkflowMarket(random_workflow(rng, 7, density=0.5), random_agents(rng))
    phi = rng.uniform(0.5, 2.0, market.n_agents)
    for _ in range(20):
        a = np.array([rng.choice(np.flatnonzero(market.capable[v])) for v in range(market.n_nodes)])
        assert market.objective(a, phi) == pytest.approx(paper_objective(market, a, phi), rel=1e-12)


@pytest.mark.parametrize(("context", "expected"), [(1_000_000, [1, 1]), (10, [1, 0])])
def test_child_stays_with_parent_only_when_the_context_is_worth_it(context, expected):
    # "a" may only go to "dear"; "b" is cheaper on "cheap" unless it must re-read a big context.
    nodes = [Node("a", 1, 0, 1000, allowed_agents=frozenset({"dear"})), Node("b", 1, context, 100)]
    market = WorkflowMarket(Workflow.from_links(nodes, [("a", "b", None)]),
                            [Agent("cheap", 1, 0.5), Agent("dear", 1, 0.5)])
    phi = np.array([1.0, 1.5])
    for method in ("tree", "junction_tree", "milp"):
        assert allocate(market, phi, make_solver(market, method)).tolist() == expected


def test_auto_choice_follows_topology():
    rng = np.random.default_rng(1)
    agents = random_agents(rng)
    assert make_solver(WorkflowMarket(random_workflow(rng, 8, tree=True), agents)).name == "tree"
    diamond = Workflow.from_links([Node(n, 1, 10, 10) for n in "abcd"],
                                  [("a", "b", None), ("a", "c", None), ("b", "d", None), ("c", "d", None)])
    assert make_solver(WorkflowMarket(diamond, agents)).name == "junction_tree"
    assert JUNCTION_TREE_MAX_TABLE > 0


def test_tree_solver_refuses_a_cyclic_graph_and_unknown_names_are_errors():
    diamond = Workflow.from_links([Node(n, 1, 10, 10) for n in "abc"],
                                  [("a", "b", None), ("a", "c", None), ("b", "c", None)])
    market = WorkflowMarket(diamond, [Agent("x", 1, 0.2)])
    with pytest.raises(ValueError, match="undirected cycles"):
        make_solver(market, "tree")
    with pytest.raises(ValueError, match="unknown solver"):
        make_solver(market, "greedy")


def test_every_agent_refused_on_a_node_is_an_error():
    market = WorkflowMarket(Workflow([Node("only", 2, 1, 1)], []), [Agent("x", 2, 0.2), Agent("y", 1, 0.2)])
    with pytest.raises(ValueError, match="node 'only'"):
        allocate(market, np.array([np.inf, 1.0]), make_solver(market))
