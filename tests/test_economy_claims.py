"""Economy claims: verdicts recomputed from the committed tables, and no claim outruns its table."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path
from typing import Any

import pytest

from mercato.experiments import economy_claims
from mercato.experiments.claims import Claim, Verdict, claims_table, tally, tally_line
from mercato.experiments.economy_claims import Tolerance, cell_claims, claims, finding_claims

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "results" / "economy"
EXPERIMENTS = ("1", "2", "3", "4", "5", "6")


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _rows(path: Path) -> list[dict[str, Any]]:
    """A committed CSV with its numbers typed back; empty cells are absent, as in the reports."""
    if not path.exists():
        return []
    with path.open() as fh:
        return [{k: _value(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]


def _factors(path: Path) -> list[str]:
    with path.open() as fh:
        header = next(csv.reader(fh))
    return header[: header.index("n")]


@pytest.fixture(scope="module")
def committed() -> dict[str, dict[str, Any]]:
    out = {}
    for n in EXPERIMENTS:
        stem = COMMITTED / f"exp{n}"
        out[n] = {"factors": _factors(stem.with_name(f"exp{n}_summary.csv")),
                  "summary": _rows(stem.with_name(f"exp{n}_summary.csv")),
                  "tests": _rows(stem.with_name(f"exp{n}_tests.csv")),
                  "variant": _rows(stem.with_name(f"exp{n}_variant_summary.csv")),
                  "variant_tests": _rows(stem.with_name(f"exp{n}_variant_tests.csv"))}
    return out


def _claims(data: dict[str, Any], n: str) -> list[Claim]:
    return claims(n, data["factors"], data["summary"], data["tests"], data["variant"], data["variant_tests"])


def test_tolerance_takes_the_larger_of_share_and_floor():
    assert Tolerance(relative=0.1, floor=0.5).allowed(2.0) == 0.5
    assert Tolerance(relative=0.1, floor=0.5).allowed(20.0) == pytest.approx(2.0)
    assert str(Tolerance(relative=0.1, floor=0.5)) == "10% (at least 0.5)"
    assert str(Tolerance(floor=0.05)) == "0.05"


def test_committed_reports_open_with_their_own_claims(committed):
    """Each expN.md carries exactly the claims its committed CSVs give; the index the tally."""
    everything = []
    for n in EXPERIMENTS:
        found = _claims(committed[n], n)
        everything += found
        text = (COMMITTED / f"exp{n}.md").read_text()
        assert text.splitlines()[2].startswith(tally_line(found))
        assert claims_table(found) in text
    cells = [c for c in everything if c.claim.startswith(("S5 ", "S6 ", "S7 ", "S9 ", "S10 ", "S11 "))]
    assert len(cells) == 516
    assert all(c.verdict is not Verdict.NOT_ATTEMPTED for c in everything)
    assert (COMMITTED / "README.md").read_text().splitlines()[2].startswith(tally_line(everything))


def test_readme_quotes_the_committed_tally(committed):
    counts = tally([c for n in EXPERIMENTS for c in _claims(committed[n], n)])
    readme = " ".join((COMMITTED.parents[2] / "README.md").read_text().split())
    quoted = (f"of {sum(counts.values())} claims, {counts[Verdict.REPRODUCED]} reproduced, "
              f"{counts[Verdict.DIRECTION]} direction only, {counts[Verdict.NOT_REPRODUCED]} not reproduced")
    assert quoted in readme


def _set(rows: list[dict[str, Any]], metric: str, value: float, **levels: Any) -> None:
    for r in rows:
        if all(r[k] == v for k, v in levels.items()):
            r[metric] = value


def _finding(data: dict[str, Any], n: str, start: str) -> Claim:
    return next(c for c in finding_claims(n, data["summary"]) if c.claim.startswith(start))


@pytest.mark.parametrize("shift, ours, verdict", [(+50.0, "0 of 4", Verdict.NOT_REPRODUCED),
                                                  (-50.0, "4 of 4", Verdict.REPRODUCED)])
def test_governance_latency_claim_follows_the_table(committed, shift, ours, verdict):
    """Strict latency above / below none's in every cell: the finding must say 0 / 4 of 4."""
    data = copy.deepcopy(committed["3"])
    for t in ("tree", "entangled"):
        for load in ("medium", "high"):
            none = next(r for r in data["summary"] if (r["topology"], r["load"], r["governance"])
                        == (t, load, "none"))["median_latency"]
            _set(data["summary"], "median_latency", none + shift, topology=t, load=load, governance="strict")
    claim = _finding(data, "3", "strict governance lowers median latency")
    assert (claim.ours, claim.verdict) == (ours, verdict)
    cell = next(c for c in cell_claims("3", data["factors"], data["summary"])
                if c.claim == "S7 entangled/high/strict median latency (ms)")
    # The paper's strict cell is 138 ms below none's: a higher one has no direction.
    assert (cell.verdict is Verdict.NOT_REPRODUCED) == (shift > 0)


@pytest.mark.parametrize("gap, verdict", [(-1.0, Verdict.NOT_REPRODUCED), (+1.0, Verdict.REPRODUCED)])
def test_a_winner_the_table_does_not_support_is_never_claimed(committed, gap, verdict):
    """SP/medium: the paper has random beat value-greedy; ours must follow our own table."""
    data = copy.deepcopy(committed["6"])
    cell = {"topology": "sp", "load": "medium", "architecture": "naive"}
    greedy = next(r for r in data["summary"] if all(r[k] == v for k, v in cell.items())
                  and r["mechanism"] == "value_greedy")["welfare"]
    _set(data["summary"], "welfare", greedy + gap, mechanism="random", **cell)
    claim = _finding(data, "6", "SP/medium: random beats value-greedy")
    assert claim.verdict is verdict
    assert claim.ours.endswith("(does not hold)") == (gap < 0)


def test_the_variant_is_said_to_do_better_only_when_its_verdict_is_better(committed):
    order = list(Verdict)
    for n in EXPERIMENTS:
        data = committed[n]
        if not data["variant"]:
            continue
        paper_rule = _claims(data, n)
        variant = claims(n, data["factors"], data["variant"], data["variant_tests"])
        for c, v in zip(paper_rule, variant, strict=True):
            assert c.claim == v.claim
            said = c.reason.startswith("the welfare-aware variant does better")
            assert said == (order.index(v.verdict) < order.index(c.verdict)), c.claim


def test_cell_direction_is_the_sign_of_the_change_from_the_reference_level():
    row = {"load": "high", "drop_rate": 0.9, "drop_rate_paper": 0.9}
    ref = {"load": "low", "drop_rate": 0.2, "drop_rate_paper": 0.3}
    found = cell_claims("1", ["load"], [ref, row])
    assert [c.verdict for c in found] == [Verdict.NOT_REPRODUCED, Verdict.REPRODUCED]
    row["drop_rate"] = 0.7  # 0.2 off the paper, but up from low load as in the paper
    assert cell_claims("1", ["load"], [ref, row])[1].verdict is Verdict.DIRECTION
    row["drop_rate"] = 0.22  # flat where the paper rises
    assert cell_claims("1", ["load"], [ref, row])[1].verdict is Verdict.NOT_REPRODUCED
    assert math.isclose(economy_claims.TOLERANCES["drop_rate"].allowed(0.9), 0.05)
