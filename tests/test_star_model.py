"""Workflow and agent validation, input splitting, and the YAML loaders' error messages."""

from __future__ import annotations

import numpy as np
import pytest

from mercato.mechanisms.workflow import Agent, Edge, Node, Workflow, WorkflowMarket, split_inputs
from mercato.star.config import load_bidders, load_workflow


def test_split_inputs_gives_each_parent_its_share_of_the_input():
    nodes = [Node("a", 1, 0, 30), Node("b", 1, 0, 10), Node("c", 1, 20, 5)]
    edges = split_inputs(nodes, [("a", "c"), ("b", "c")])
    assert [e.tokens for e in edges] == pytest.approx([15.0, 5.0])
    wf = Workflow(nodes, edges)
    assert wf.external_input.tolist() == pytest.approx([0.0, 0.0, 0.0])


def test_external_input_is_what_no_edge_carries():
    wf = Workflow.from_links([Node("a", 1, 7, 30), Node("b", 1, 50, 10)], [("a", "b", 20.0)])
    assert wf.external_input.tolist() == pytest.approx([7.0, 30.0])


@pytest.mark.parametrize(("nodes", "edges", "message"), [
    ([], [], "no nodes"),
    ([Node("a", 1, 1, 1), Node("a", 1, 1, 1)], [], "duplicate node name 'a'"),
    ([Node("a", 1, 1, 1)], [Edge("a", "z", 1)], "unknown node 'z'"),
    ([Node("a", 1, 5, 1), Node("b", 1, 5, 1)], [Edge("a", "b", 1), Edge("b", "a", 1)], "cycle: "),
    ([Node("a", 1, 5, 1), Node("b", 1, 5, 1)], [Edge("a", "b", 1), Edge("a", "b", 1)], "duplicate edge"),
    ([Node("a", 1, 5, 1), Node("b", 1, 5, 1)], [Edge("a", "b", 9)], "node 'b': incoming edges carry 9"),
])
def test_bad_workflows_name_the_problem(nodes, edges, message):
    with pytest.raises(ValueError, match=message):
        Workflow(nodes, edges)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Node("a", 4, 1, 1), "node 'a': difficulty must be 1, 2 or 3"),
    (lambda: Node("a", 1, -1, 1), "node 'a': input_tokens must be a finite number >= 0"),
    (lambda: Node("a", 1, 1, float("nan")), "output_tokens"),
    (lambda: Edge("a", "a", 1), "cannot feed itself"),
    (lambda: Agent("x", 0, 0.2), "tier must be an integer >= 1"),
    (lambda: Agent("x", 1, 0.2, 1.5), "cached_discount"),
])
def test_bad_parts_name_the_problem(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_capability_errors():
    wf = Workflow([Node("hard", 3, 1, 1), Node("pinned", 1, 1, 1, allowed_agents=frozenset({"ghost"}))], [])
    with pytest.raises(ValueError, match=r"node 'hard' \(difficulty 3\): no agent can serve it"):
        WorkflowMarket(wf, [Agent("x", 2, 0.2)])
    with pytest.raises(ValueError, match="unknown agent 'ghost'"):
        WorkflowMarket(wf, [Agent("x", 3, 0.2)])
    with pytest.raises(ValueError, match="duplicate agent name 'x'"):
        WorkflowMarket(wf, [Agent("x", 3, 0.2), Agent("x", 3, 0.2)])


def test_work_counts_cached_context_at_the_discount():
    wf = Workflow.from_links([Node("a", 1, 0, 100), Node("b", 1, 100, 10)], [("a", "b", None)])
    market = WorkflowMarket(wf, [Agent("x", 1, 0.5, 0.1), Agent("y", 1, 0.25)])
    assert market.work([0, 0]).tolist() == pytest.approx([100 + 10 + 0.5 * 0.1 * 100, 0])
    assert market.work([0, 1]).tolist() == pytest.approx([100, 10 + 0.25 * 100])
    assert market.fresh_transfer_tokens([0, 1]) == 100 and market.fresh_transfer_tokens([1, 1]) == 0


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("nodes: []\n", "'nodes' must be a non-empty list"),
    ("- 1\n", "expected a mapping"),
    ("nodes: [{name: a, difficulty: 1, input_tokens: 1}]\n",
     r"nodes\[0\] \('a'\): missing field 'output_tokens'"),
    ("nodes: [{name: a, difficulty: 1, input_tokens: 1, output_tokens: 1, colour: red}]\n",
     "unknown field 'colour'"),
    ("nodes: [{name: a, difficulty: 1, input_tokens: x, output_tokens: 1}]\n",
     "input_tokens must be a number"),
    ("nodes: [{name: a, difficulty: 1, input_tokens: 1, output_tokens: 1}]\nedges: [{from: a, to: b}]\n",
     "unknown node 'b'"),
    ("nodes: [{name: a, difficulty: 1\n", "not valid YAML"),
])
def test_workflow_yaml_errors(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_workflow(write(tmp_path, "wf.yaml", text))


@pytest.mark.parametrize(("text", "message"), [
    ("agents: [{name: x, tier: 1, bid: 1}]\n", "missing field 'prior'"),
    ("agents: [{name: x, tier: 1, bid: -1, prior: {type: uniform, low: 0, high: 2}}]\n", "bid must be"),
    ("agents: [{name: x, tier: 1, bid: 1, prior: {type: beta}}]\n", "unknown prior type 'beta'"),
    ("agents: [{name: x, tier: 1, bid: 1, prior: {type: lognormal, median: 1}}]\n", "missing field 'sigma'"),
    ("agents: [{name: x, tier: 1.5, bid: 1, prior: {type: uniform, low: 0, high: 2}}]\n", "tier must be"),
])
def test_agents_yaml_errors(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_bidders(write(tmp_path, "agents.yaml", text))


def test_agents_yaml_defaults_and_prior_types(tmp_path):
    bidders = load_bidders(write(tmp_path, "agents.yaml", """
agents:
  - {name: a, tier: 1, bid: 0.5, prior: {type: uniform, low: 0.1, high: 1.0}}
  - {name: b, tier: 2, bid: 1.0, cost: 0.8, input_ratio: 0.125, cached_discount: 0.1, reserve: 3,
     prior: {type: lognormal, median: 1.0, sigma: 0.5}}
  - {name: c, tier: 3, bid: 2.0, prior: {type: truncated_normal, mean: 2, std: 1, low: 0.5, high: 5}}
  - {name: d, tier: 3, bid: 2.0, prior: {type: empirical, samples: [1, 1.2, 3, 3.1], bandwidth: 0.2}}
"""))
    assert bidders.costs.tolist() == [0.5, 0.8, 2.0, 2.0]
    assert bidders.agents[0].input_ratio == 0.25 and bidders.agents[1].input_ratio == 0.125
    assert bidders.reserves.tolist() == pytest.approx([1.0, 3.0, 5.0, bidders.virtual_costs[3].reserve])
    phi = [vc.scalar(b) for vc, b in zip(bidders.virtual_costs, bidders.bids, strict=True)]
    assert np.isfinite(phi).all()
