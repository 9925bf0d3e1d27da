"""What the synthetic generators share: length units, facts with their questions, question picking.

The CoQA, QuAC and HotpotQA look-alikes measure their texts in the same units as the published
statistics they imitate (:data:`~mercato.workloads.synthetic.PUBLISHED`), and build every gold
answer as a span of a sentence they wrote, so the helpers for both live here, below all three.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from mercato.workloads.dialogue import Turn

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_words(text: str) -> int:
    """Whitespace-separated words."""
    return len(text.split())


def count_tokens(text: str) -> int:
    """Word and punctuation tokens, the unit QuAC's statistics use."""
    return len(_TOKEN.findall(text))


def binomial(rng: random.Random, trials: int, p: float) -> int:
    """A Binomial(trials, p) draw from ``rng`` (one uniform per trial)."""
    return sum(rng.random() < p for _ in range(trials))


@dataclass
class Fact:
    """A sentence of a generated text and the questions it answers (answer spans of it)."""

    sentence: str
    qas: list[tuple[str, str]]


def pick_in_order(rng: random.Random, facts: list[Fact], turns: int) -> list[Turn]:
    """``turns`` distinct questions drawn from the facts, asked in the order of the text."""
    seen: set[str] = set()
    candidates = []
    for fact in facts:
        for question, answer in fact.qas:
            if question not in seen and answer in fact.sentence:
                seen.add(question)
                candidates.append(Turn(question, answer))
    chosen = sorted(rng.sample(range(len(candidates)), turns))
    return [candidates[k] for k in chosen]
