"""The paper's four workflow topologies S1-S4 (Appendix D, Tables 3-6), with token noise.

Node counts, difficulties and token sizes are the tables' values. The tables give node sizes,
not edges; the edges below follow each scenario's description and figure, and every edge
carries the share of its target's input given by :func:`split_inputs` (the parent's whole
output wherever a node's input equals the sum of its parents' outputs, as it does for all but
S1's final editor and S2's merger, whose inputs are digests). S1 is the one cycle of
Table 3 (Figure 1 draws five).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from mercato.mechanisms.workflow import Node, Workflow

K = 1_000
SCENARIOS: dict[str, str] = {
    "S1": "Chain of Broadcasters",
    "S2": "Nested Fan-out",
    "S3": "Tree-structure Fan-out",
    "S4": "Hourglass-structure",
}
TOKEN_NOISE = 0.10


def _nodes(role: str, count: int, difficulty: int, l_in: float, l_out: float, stem: str) -> list[Node]:
    names = [stem] if count == 1 else [f"{stem}_{k + 1}" for k in range(count)]
    return [Node(n, difficulty, l_in, l_out, role) for n in names]


def _s1() -> tuple[list[Node], list[tuple[str, str]]]:
    brainstorm = _nodes("Brainstorm", 1, 3, 2 * K, 30 * K, "brainstorm")
    writers = _nodes("Chapter Writer", 8, 3, 30 * K, 40 * K, "writer")
    aggregator = _nodes("Aggregator", 1, 1, 320 * K, 300 * K, "aggregator")
    polish = _nodes("Reviser (Polish)", 4, 1, 300 * K, 35 * K, "reviser_polish")
    content = _nodes("Reviser (Content)", 4, 3, 300 * K, 35 * K, "reviser_content")
    editor = _nodes("Final Editor", 1, 3, 35 * K, 10 * K, "final_editor")
    links = [("brainstorm", w.name) for w in writers] + [(w.name, "aggregator") for w in writers]
    links += [("aggregator", r.name) for r in polish + content]
    links += [(r.name, "final_editor") for r in polish + content]
    return brainstorm + writers + aggregator + polish + content + editor, links


def _s2() -> tuple[list[Node], list[tuple[str, str]]]:
    head = (_nodes("Scanner", 1, 1, 1 * K, 3 * K, "scanner")
            + _nodes("Analyzer", 1, 2, 3 * K, 5 * K, "analyzer")
            + _nodes("Planner", 1, 3, 5 * K, 8 * K, "planner")
            + _nodes("SpecGenerator", 1, 1, 8 * K, 350 * K, "spec_generator"))
    modules = (_nodes("Module (Core Logic)", 1, 3, 350 * K, 25 * K, "module_core")
               + _nodes("Module (API/Data/UI)", 7, 2, 350 * K, 25 * K, "module_app")
               + _nodes("Module (Utils/Cache)", 2, 1, 350 * K, 25 * K, "module_utils"))
    main = _nodes("File (Main Implementation)", 10, 3, 25 * K, 15 * K, "file_main")
    boiler = _nodes("File (Types/Boilerplate)", 20, 1, 25 * K, 15 * K, "file_types")
    tail = _nodes("Merger", 1, 1, 30 * K, 15 * K, "merger") + _nodes("Tester", 1, 2, 15 * K, 8 * K, "tester")
    links = [(a.name, b.name) for a, b in itertools.pairwise(head)]
    links += [("spec_generator", m.name) for m in modules]
    for k, module in enumerate(modules):  # each module: one main file and two boilerplate files
        for f in (main[k], boiler[2 * k], boiler[2 * k + 1]):
            links += [(module.name, f.name), (f.name, "merger")]
    links.append(("merger", "tester"))
    return head + modules + main + boiler + tail, links


def _s3() -> tuple[list[Node], list[tuple[str, str]]]:
    head = _nodes("Architect", 1, 2, 2 * K, 10 * K, "architect") + _nodes("SpecWriter", 1, 1, 10 * K, 300 * K,
                                                                          "spec_writer")
    leads = [Node("lead_frontend", 2, 300 * K, 50 * K, "Lead (Frontend)"),
             Node("lead_backend", 2, 300 * K, 40 * K, "Lead (Backend)"),
             Node("lead_interactive", 2, 300 * K, 30 * K, "Lead (Interactive)")]
    teams = [(leads[0], _nodes("Dev (Frontend Static)", 5, 1, 50 * K, 15 * K, "dev_frontend")),
             (leads[1], _nodes("Dev (Backend API)", 4, 2, 40 * K, 20 * K, "dev_backend")),
             (leads[2], _nodes("Dev (Interactive AI)", 3, 3, 30 * K, 15 * K, "dev_interactive"))]
    links = [("architect", "spec_writer")] + [("spec_writer", lead.name) for lead in leads]
    devs: list[Node] = []
    for lead, members in teams:
        links += [(lead.name, d.name) for d in members]
        devs += members
    return head + leads + devs, links


def _s4() -> tuple[list[Node], list[tuple[str, str]]]:
    head = (_nodes("Expert Assessment", 1, 3, 2 * K, 5 * K, "expert_assessment")
            + _nodes("Case Retriever", 1, 1, 5 * K, 400 * K, "case_retriever"))
    analysts = (_nodes("Analyst (Clause Extract)", 3, 1, 400 * K, 35 * K, "analyst_clause")
                + _nodes("Analyst (Liability)", 2, 2, 400 * K, 20 * K, "analyst_liability"))
    aggregator = _nodes("Aggregator", 1, 1, 145 * K, 80 * K, "aggregator")
    strategists = [Node(f"strategist_{s}", 2, 80 * K, 20 * K, f"Strategist ({s.title()})")
                   for s in ("aggressive", "defensive", "settlement")]
    synthesis = _nodes("Expert Synthesis", 1, 3, 60 * K, 10 * K, "expert_synthesis")
    links = [("expert_assessment", "case_retriever")] + [("case_retriever", a.name) for a in analysts]
    links += [(a.name, "aggregator") for a in analysts] + [("aggregator", s.name) for s in strategists]
    links += [(s.name, "expert_synthesis") for s in strategists]
    return head + analysts + aggregator + strategists + synthesis, links


_BUILDERS: dict[str, Callable[[], tuple[list[Node], list[tuple[str, str]]]]] = {
    "S1": _s1, "S2": _s2, "S3": _s3, "S4": _s4}


def scenario(name: str, rng: np.random.Generator | None = None) -> Workflow:
    """Scenario ``name`` (S1-S4); with ``rng``, every node's L_in and L_out scaled by U(0.9, 1.1)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown scenario '{name}'; choose one of {', '.join(_BUILDERS)}")
    nodes, links = _BUILDERS[name]()
    if rng is not None:
        noise = rng.uniform(1 - TOKEN_NOISE, 1 + TOKEN_NOISE, (len(nodes), 2))
        nodes = [replace(n, input_tokens=n.input_tokens * a, output_tokens=n.output_tokens * b)
                 for n, (a, b) in zip(nodes, noise, strict=True)]
    return Workflow.from_links(nodes, [(s, t, None) for s, t in links])
