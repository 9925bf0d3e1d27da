"""IEMAS claims: verdicts computed from the committed results, and no winner the table does not hold."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mercato.experiments.claims import Verdict, claims_table, tally, tally_line
from mercato.experiments.iemas import claims as iemas_claims
from mercato.experiments.iemas.common import Section
from mercato.experiments.iemas.report import baseline_first

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "results" / "iemas"
SECTION_KEYS = ("experiment", "title", "ok", "seconds", "files")


def sections_of(all_json: dict) -> dict[str, Section]:
    return {s["experiment"]: Section(s["experiment"], s["title"], "", {k: v for k, v in s.items()
                                                                       if k not in SECTION_KEYS}, ok=s["ok"])
            for s in all_json["sections"]}


@pytest.fixture(scope="module")
def committed() -> dict[str, Section]:
    return sections_of(json.loads((COMMITTED / "all.json").read_text()))


def test_committed_report_opens_with_its_own_claims(committed):
    claims = iemas_claims.claims(committed)
    text = (COMMITTED / "REPORT.md").read_text()
    assert text.splitlines()[2] == f"{tally_line(claims)} {baseline_first(committed)}"
    assert claims_table(claims) in text
    cells = [c for c in claims if c.claim.split()[0] in ("coqa", "quac", "hotpotqa")]
    assert len(cells) == 54
    learned = [c for c in cells if c.claim.split()[1] in ("GraphRouter", "GMTRouter", "MFRouter", "RouterDC")]
    assert len(learned) == 36 and all(c.verdict is Verdict.NOT_ATTEMPTED for c in learned)


def test_readme_quotes_the_committed_tally(committed):
    counts = tally(iemas_claims.claims(committed))
    readme = " ".join((COMMITTED.parents[2] / "README.md").read_text().split())
    quoted = (f"of {sum(counts.values())} claims, {counts[Verdict.REPRODUCED]} reproduced, "
              f"{counts[Verdict.DIRECTION]} direction only, {counts[Verdict.NOT_REPRODUCED]} not reproduced, "
              f"{counts[Verdict.NOT_ATTEMPTED]} not attempted")
    assert quoted in readme


def _set(sections: dict[str, Section], protocol: str, workload: str, policy: str, **values: float) -> None:
    row = next(r for r in sections["table1"].data["summary"]
               if (r["protocol"], r["workload"], r["policy"]) == (protocol, workload, policy))
    row.update(values)


def test_a_leader_the_table_does_not_support_is_not_claimed(committed):
    sections = copy.deepcopy(committed)
    for w in ("coqa", "quac", "hotpotqa_sample"):  # the auction leads KV hit everywhere...
        _set(sections, "reference", w, "auction", kv_hit_rate=1.0)
    lead = next(c for c in iemas_claims.claims(sections) if c.claim.startswith("IEMAS has the highest KV"))
    assert (lead.ours, lead.verdict) == ("3 of 3", Verdict.REPRODUCED)
    _set(sections, "reference", "quac", "random", kv_hit_rate=1.5)  # ...until Random beats it on QuAC
    lead = next(c for c in iemas_claims.claims(sections) if c.claim.startswith("IEMAS has the highest KV"))
    assert lead.ours == "2 of 3" and lead.verdict is Verdict.NOT_REPRODUCED and "quac `random`" in lead.reason
    cell = next(c for c in iemas_claims.claims(sections) if c.claim == "quac IEMAS KV hit")
    assert cell.verdict is Verdict.NOT_REPRODUCED  # 1.0 is far from 0.636, and Random now leads


def test_the_strongest_baseline_is_counted_where_it_wins(committed):
    sections = copy.deepcopy(committed)
    for r in sections["table1"].data["summary"]:
        if r["policy"] == "cache_aware":
            r.update(kv_hit_rate=-1.0, mean_cost=1e9, ttft_p95_ms=1e9, welfare=-1e9)
    assert "on KV hit in 0, cost in 0, TTFT p95 in 0, welfare in 0 of 6" in baseline_first(sections)
