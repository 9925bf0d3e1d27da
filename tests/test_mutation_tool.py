"""tools/mutation.py (`make mutation`): scoring mutmut's verdicts per module and group, fairly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_tool():
    spec = importlib.util.spec_from_file_location("mutation_tool", ROOT / "tools" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


tool = _load_tool()

RESULTS = """
    mercato.mechanisms.vcg.x_slot_values__mutmut_1: killed
    mercato.mechanisms.vcg.x_slot_values__mutmut_2: survived
    mercato.mechanisms.vcg.x_slot_values__mutmut_3: timeout
    mercato.mechanisms.bmatching.x_solve_usable__mutmut_1: survived
    mercato.gateway.live.ledger.xǁGroupCommitterǁ_drain__mutmut_7: no tests
    mercato.gateway.live.ledger.xǁGroupCommitterǁ_drain__mutmut_8: killed
"""


def test_results_are_parsed_per_mutant():
    verdicts = tool.parse_results(RESULTS + "\nsome other line: not a mutant\n")
    assert len(verdicts) == 6
    assert verdicts["mercato.mechanisms.vcg.x_slot_values__mutmut_3"] == "timeout"
    assert verdicts["mercato.gateway.live.ledger.xǁGroupCommitterǁ_drain__mutmut_7"] == "no tests"


def test_mutants_map_to_their_source_files_and_groups():
    vcg = tool.module_path("mercato.mechanisms.vcg.x_slot_values__mutmut_1")
    ledger = tool.module_path("mercato.gateway.live.ledger.xǁGroupCommitterǁ_drain__mutmut_7")
    assert (vcg, ledger) == ("src/mercato/mechanisms/vcg.py", "src/mercato/gateway/live/ledger.py")
    assert tool.group_of("src/mercato/gateway/core/policies/knn.py").name == "policies"
    assert tool.group_of("src/mercato/gateway/live/ledger.py").target == 0.90
    with pytest.raises(ValueError, match="belongs to no group"):
        tool.group_of("src/mercato/engine/core.py")


def test_every_configured_module_has_a_group_and_exists():
    modules = tool.target_modules(tool.mutmut_config()["only_mutate"])
    assert "src/mercato/mechanisms/bmatching.py" in modules
    assert "src/mercato/gateway/core/policies/auction.py" in modules
    assert {tool.group_of(m).name for m in modules} == {g.name for g in tool.GROUPS}


def test_only_listed_survivors_that_still_make_the_recorded_change_are_excluded():
    verdicts = tool.parse_results(RESULTS)
    listed = [
        tool.Equivalent("mercato.mechanisms.vcg.x_slot_values__mutmut_2", "x = a >= b", "why"),
        tool.Equivalent("mercato.mechanisms.vcg.x_slot_values__mutmut_1", "y = 1", "killed after all"),
        tool.Equivalent("mercato.mechanisms.bmatching.x_solve_usable__mutmut_1", "z = 2", "numbering moved"),
        tool.Equivalent("mercato.mechanisms.vcg.x_gone__mutmut_9", "w = 0", "function removed"),
    ]
    added = {"mercato.mechanisms.vcg.x_slot_values__mutmut_2": "x = a >= b",
             "mercato.mechanisms.vcg.x_slot_values__mutmut_1": "y = 1",
             "mercato.mechanisms.bmatching.x_solve_usable__mutmut_1": "z = 3"}
    excluded, problems = tool.verified_equivalents(listed, verdicts, added)
    assert excluded == {"mercato.mechanisms.vcg.x_slot_values__mutmut_2"}
    assert [p.split(":")[0] for p in problems] == [e.name for e in listed[1:]]
    assert "kills it" in problems[0] and "another change" in problems[1] and "no such mutant" in problems[2]


def test_scores_count_timeouts_as_killed_and_untested_as_survived():
    verdicts = tool.parse_results(RESULTS)
    scores = tool.score_modules(verdicts, {"mercato.mechanisms.vcg.x_slot_values__mutmut_2"})
    vcg, ledger = scores["src/mercato/mechanisms/vcg.py"], scores["src/mercato/gateway/live/ledger.py"]
    assert (vcg.mutants, vcg.killed, vcg.equivalent, vcg.survived, vcg.timeouts) == (3, 2, 1, 0, 1)
    assert vcg.score == 1.0
    assert (ledger.killed, ledger.survived, ledger.score) == (1, 1, 0.5)
    assert ledger.survivors == ["mercato.gateway.live.ledger.xǁGroupCommitterǁ_drain__mutmut_7"]
    groups = tool.score_groups(scores)
    assert list(groups) == ["mechanism core", "ledger stores"]  # in GROUPS order, empty ones left out
    core = groups["mechanism core"]
    assert (core.mutants, core.killed, core.equivalent, core.survived) == (4, 2, 1, 1)
    assert core.score == pytest.approx(2 / 3) and core.raw_score == 0.5


def test_an_unfinished_run_is_not_scored():
    with pytest.raises(ValueError, match="did not finish"):
        tool.score_modules({"mercato.mechanisms.vcg.x_f__mutmut_1": "not checked"}, set())


def test_report_says_which_targets_are_met():
    scores = tool.score_modules(tool.parse_results(RESULTS), set())
    report = tool.build_report(scores, 61.0, ["x: listed as equivalent but a test kills it"],
                               meta={"mutmut": "3.8.1", "commit": "abc1234"})
    core = next(g for g in report["groups"] if g["name"] == "mechanism core")
    assert core["met"] is False and core["score"] == 0.5 and core["target"] == 0.95
    assert report["wall_s"] == 61.0 and len(report["survivors"]) == 3
    markdown = tool.render_markdown(report)
    assert "| mechanism core | 4 | 2 | 0 | 2 | 50.0% | 95.0% | **no** | 50.0% |" in markdown
    assert "| src/mercato/mechanisms/vcg.py | 3 | 2 | 0 | 1 | 66.7% | 95.0% | **no** | 66.7% |" in markdown
    assert "mutmut 3.8.1" in markdown and "## Equivalent list to re-check" in markdown


def test_added_lines_are_read_from_mutmut_show():
    shown = """# name: survived
--- src/a.py
+++ src/a.py
@@ -1,3 +1,3 @@
 def f(x):
-    return x < 0
+    return x <= 0
"""
    assert tool.added_lines(shown) == "return x <= 0"


def test_the_committed_equivalent_list_gives_a_reason_for_every_entry():
    listed = tool.load_equivalents()
    assert all(e.reason and e.mutation for e in listed)
    assert len({e.name for e in listed}) == len(listed)
    modules = tool.target_modules(tool.mutmut_config()["only_mutate"])
    assert all(tool.module_path(e.name) in modules for e in listed)
