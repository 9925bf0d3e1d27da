"""Claims tables: verdicts computed from the numbers, and STAR's report never outruns its table."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mercato.experiments import star_claims, star_report
from mercato.experiments.claims import Claim, Verdict, claims_table, judge, tally, tally_line

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "results" / "star"


def test_judge_tolerance_then_direction():
    assert judge(10.0, 10.9, 0.1, relative=True, same_direction=False) is Verdict.REPRODUCED
    assert judge(10.0, 11.1, 0.1, relative=True, same_direction=True) is Verdict.DIRECTION
    assert judge(10.0, 11.1, 0.1, relative=True, same_direction=False) is Verdict.NOT_REPRODUCED
    assert judge(-20.0, -17.5, 3.0, relative=False, same_direction=False) is Verdict.REPRODUCED
    assert judge(-20.0, -16.9, 3.0, relative=False, same_direction=False) is Verdict.NOT_REPRODUCED


def test_tally_counts_every_verdict_in_order():
    claims = [Claim("a", "1", "1", Verdict.REPRODUCED, ""), Claim("b", "1", "2", Verdict.NOT_REPRODUCED, ""),
              Claim("c", "1", "-", Verdict.NOT_ATTEMPTED, "")]
    assert list(tally(claims).values()) == [1, 0, 1, 1]
    assert tally_line(claims) == ("Of 3 claims: 1 reproduced, 0 direction only, 1 not reproduced, "
                                  "1 not attempted.")
    assert claims_table(claims).splitlines()[2] == "| a | 1 | 1 | reproduced |  |"


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads((COMMITTED / "summary.json").read_text())


def test_committed_report_opens_with_its_own_claims(committed):
    """The committed markdown carries exactly the claims its committed results give."""
    claims = star_claims.claims(committed)
    text = (COMMITTED / "summary.md").read_text()
    assert text.splitlines()[2].startswith(tally_line(claims))
    assert claims_table(claims) in text
    assert len([c for c in claims if c.claim.startswith(("S1 ", "S2 ", "S3 ", "S4 "))]) == 32


def test_a_winner_the_table_does_not_support_is_not_claimed(committed):
    """Make myopic the cheapest in S2: the headline and the intro must both stop saying 4 of 4."""
    report = copy.deepcopy(committed)
    s2 = report["summary"][1]
    s2["myopic_mean"] = s2["star_mean"] * 0.5
    claims = star_claims.claims(report)
    cheapest = next(c for c in claims if c.claim.startswith("STAR pays least"))
    assert (cheapest.ours, cheapest.verdict) == ("3 of 4", Verdict.NOT_REPRODUCED)
    assert next(c for c in claims if c.claim == "S2 Myopic mean payment ($)").verdict is not Verdict.DIRECTION
    intro = star_report.markdown(report, claims).splitlines()[2]
    assert "in 3 of 4 settings" in intro and "as the paper reports" not in intro


def test_readme_quotes_the_committed_tally(committed):
    counts = tally(star_claims.claims(committed))
    readme = " ".join((COMMITTED.parents[2] / "README.md").read_text().split())
    quoted = (f"of {sum(counts.values())} claims, {counts[Verdict.REPRODUCED]} reproduced, "
              f"{counts[Verdict.DIRECTION]} direction only, {counts[Verdict.NOT_REPRODUCED]} not reproduced")
    assert quoted in readme
