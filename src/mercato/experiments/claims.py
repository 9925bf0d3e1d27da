"""Claims tables: each of a paper's claims beside our value and a verdict computed from both.

A reproduction report is only as honest as its weakest sentence, so the verdicts are not
written by hand: every claim is judged by :func:`judge` from the paper's number, ours and a
tolerance stated with the claim, and the report opens with :func:`claims_table` and the tally
of :func:`tally_line`. Regenerating the report from the same results regenerates the same
verdicts, and a test can recompute them from the committed CSV.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from mercato.reporting import markdown_table


class Verdict(enum.StrEnum):
    """How far a claim carried over, from best to worst."""

    REPRODUCED = "reproduced"
    DIRECTION = "direction only"
    NOT_REPRODUCED = "not reproduced"
    NOT_ATTEMPTED = "not attempted"


@dataclass(frozen=True)
class Claim:
    """One paper claim or table cell: the paper's value, ours, the verdict and why."""

    claim: str
    paper: str
    ours: str
    verdict: Verdict
    reason: str


def judge(paper: float, ours: float, tolerance: float, *, relative: bool, same_direction: bool) -> Verdict:
    """Reproduced within ``tolerance`` (a fraction of ``|paper|`` when ``relative``), else direction
    only when the caller says the claim's direction holds, else not reproduced."""
    allowed = tolerance * abs(paper) if relative else tolerance
    if abs(ours - paper) <= allowed:
        return Verdict.REPRODUCED
    return Verdict.DIRECTION if same_direction else Verdict.NOT_REPRODUCED


def tally(claims: Sequence[Claim]) -> dict[Verdict, int]:
    """Claims per verdict, every verdict present (zeros included), best first."""
    counts = Counter(c.verdict for c in claims)
    return {v: counts.get(v, 0) for v in Verdict}


def tally_line(claims: Sequence[Claim]) -> str:
    """``"Of 38 claims: 4 reproduced, 7 direction only, 27 not reproduced, 0 not attempted."``"""
    counts = tally(claims)
    return f"Of {len(claims)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + "."


def claims_table(claims: Sequence[Claim]) -> str:
    """The claims as a markdown table, in the order given."""
    return markdown_table(["claim", "paper", "ours", "verdict", "why"],
                          [[c.claim, c.paper, c.ours, c.verdict, c.reason] for c in claims])
