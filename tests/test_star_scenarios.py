"""The paper's scenarios (Tables 3-6) and market (Table 2, Eq. 5) are built as specified."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mercato.star.market import BETA, base_prices, draw_costs, electricity, market_agents
from mercato.star.scenarios import SCENARIOS, scenario

# (role, count, difficulty, L_in, L_out) per table row
TABLES = {
    "S1": [("Brainstorm", 1, 3, 2e3, 30e3), ("Chapter Writer", 8, 3, 30e3, 40e3),
           ("Aggregator", 1, 1, 320e3, 300e3), ("Reviser (Polish)", 4, 1, 300e3, 35e3),
           ("Reviser (Content)", 4, 3, 300e3, 35e3),
           ("Final Editor", 1, 3, 35e3, 10e3)],
    "S2": [("Scanner", 1, 1, 1e3, 3e3), ("Analyzer", 1, 2, 3e3, 5e3), ("Planner", 1, 3, 5e3, 8e3),
           ("SpecGenerator", 1, 1, 8e3, 350e3), ("Module (Core Logic)", 1, 3, 350e3, 25e3),
           ("Module (API/Data/UI)", 7, 2, 350e3, 25e3), ("Module (Utils/Cache)", 2, 1, 350e3, 25e3),
           ("File (Main Implementation)", 10, 3, 25e3, 15e3), ("File (Types/Boilerplate)", 20, 1, 25e3, 15e3),
           ("Merger", 1, 1, 30e3, 15e3), ("Tester", 1, 2, 15e3, 8e3)],
    "S3": [("Architect", 1, 2, 2e3, 10e3), ("SpecWriter", 1, 1, 10e3, 300e3),
           ("Lead (Frontend)", 1, 2, 300e3, 50e3),
           ("Lead (Backend)", 1, 2, 300e3, 40e3), ("Lead (Interactive)", 1, 2, 300e3, 30e3),
           ("Dev (Frontend Static)", 5, 1, 50e3, 15e3), ("Dev (Backend API)", 4, 2, 40e3, 20e3),
           ("Dev (Interactive AI)", 3, 3, 30e3, 15e3)],
    "S4": [("Expert Assessment", 1, 3, 2e3, 5e3), ("Case Retriever", 1, 1, 5e3, 400e3),
           ("Analyst (Clause Extract)", 3, 1, 400e3, 35e3), ("Analyst (Liability)", 2, 2, 400e3, 20e3),
           ("Aggregator", 1, 1, 145e3, 80e3), ("Strategist (Aggressive)", 1, 2, 80e3, 20e3),
           ("Strategist (Defensive)", 1, 2, 80e3, 20e3), ("Strategist (Settlement)", 1, 2, 80e3, 20e3),
           ("Expert Synthesis", 1, 3, 60e3, 10e3)],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenarios_match_the_papers_tables(name):
    wf = scenario(name)
    counts = Counter(n.role for n in wf.nodes)
    assert counts == {role: count for role, count, *_ in TABLES[name]}
    spec = {role: (d, i, o) for role, _, d, i, o in TABLES[name]}
    for node in wf.nodes:
        assert (node.difficulty, node.input_tokens, node.output_tokens) == spec[node.role]


def test_broadcasters_pass_their_whole_output_and_s3_is_a_tree():
    s4 = scenario("S4")
    out = [e.tokens for e in s4.edges if e.source == "case_retriever"]
    assert out == [400e3] * 5
    assert scenario("S3").is_forest() and not scenario("S2").is_forest()


def test_token_noise_stays_within_ten_percent():
    rng = np.random.default_rng(0)
    base, noisy = scenario("S2"), scenario("S2", rng)
    ratio = np.array([[b.input_tokens / a.input_tokens, b.output_tokens / a.output_tokens]
                      for a, b in zip(base.nodes, noisy.nodes, strict=True)])
    assert ratio.min() >= 0.9 and ratio.max() <= 1.1 and ratio.std() > 0.02


def test_market_costs_follow_eq5():
    assert electricity(8.0) == pytest.approx(0.5) and electricity(14.0) == pytest.approx(1.0)
    assert electricity(2.0) == pytest.approx(0.0)
    agents = market_agents()
    assert [a.tier for a in agents] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    draw = draw_costs(np.random.default_rng(3))
    scale = base_prices() * (1 + BETA * electricity(draw.hour))
    np.testing.assert_allclose(draw.low, 0.1 * scale)
    np.testing.assert_allclose(draw.high, scale)
    assert np.all((draw.costs >= draw.low) & (draw.costs <= draw.high))
