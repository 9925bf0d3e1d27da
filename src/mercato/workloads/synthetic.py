"""Synthetic look-alikes of CoQA, QuAC and HotpotQA: the embedded default workloads.

No copy of CoQA or QuAC can ship with mercato, so the generators produce dialogues with the
shape that matters to routing and caching: context length, turns per dialogue, answer length,
and the way a dialogue's history grows. Targets (means) and their sources:

* CoQA (Reddy, Chen and Manning, "CoQA: A Conversational Question Answering Challenge", TACL
  2019, dataset statistics): 15.2 turns per passage, passages of 271 words, answers of 2.7
  words. Here: 10 + Binomial(13, 0.4) turns, a short story of about 271 words, answers that are
  1-7 word spans (names, objects, places, times, reasons), asked in passage order.
* QuAC (Choi et al., "QuAC: Question Answering in Context", EMNLP 2018, dataset statistics):
  7.2 questions per dialogue, sections of about 401 tokens, answers of about 15 tokens. Here:
  4 + Binomial(8, 0.4) turns over one section of an invented biography; an answer is a clause
  of the section, and some questions are QuAC's follow-ups ("What happened next?").
* HotpotQA (Yang et al., "HotpotQA: A Dataset for Diverse, Explainable Multi-hop Question
  Answering", EMNLP 2018, distractor setting): one question over 10 paragraphs, 2 gold and 8
  distractors, with short answers; about 80% bridge and 20% comparison questions. Paragraphs
  are about 90 words and answers about 2 words, as measured on the bundled dev sample.
  ``turns=T`` (at most 5) builds T bridge questions that share their first gold paragraph,
  the grouping the IEMAS authors used for multi-turn HotpotQA.

This module holds the published targets and the one entry point; the generators are in
:mod:`~mercato.workloads.synthetic_coqa`, :mod:`~mercato.workloads.synthetic_quac` and
:mod:`~mercato.workloads.synthetic_hotpotqa`. Token counts for QuAC are word and punctuation tokens
(:func:`~mercato.workloads.synthetic_text.count_tokens`). Every gold answer is a span of the
context, so both evaluators can credit an extractive answer. Dialogue ``i`` of a seed depends only
on (kind, seed, i): asking for more dialogues extends the list.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from mercato.workloads.dialogue import Dialogue, Turn
from mercato.workloads.synthetic_coqa import make_coqa
from mercato.workloads.synthetic_hotpotqa import make_hotpotqa
from mercato.workloads.synthetic_quac import make_quac

MAX_HOTPOTQA_TURNS = 5


@dataclass(frozen=True)
class PublishedStatistics:
    """Means a dataset's paper (or, for HotpotQA's sizes, the bundled sample) reports."""

    turns: float
    context: float
    answer: float
    unit: str  # what context and answer lengths count: "words" or "tokens"
    source: str


PUBLISHED: dict[str, PublishedStatistics] = {
    "coqa": PublishedStatistics(15.2, 271.0, 2.7, "words", "Reddy et al. 2019, TACL, dataset statistics"),
    "quac": PublishedStatistics(7.2, 401.0, 15.0, "tokens", "Choi et al. 2018, EMNLP, dataset statistics"),
    "hotpotqa": PublishedStatistics(1.0, 917.0, 2.2, "words",
                                    "Yang et al. 2018 (10 paragraphs, single question); sizes "
                                    "measured on the bundled first-100 dev sample"),
}


def synthetic_dialogues(kind: str, n: int, seed: int = 0, turns: int | None = None) -> list[Dialogue]:
    """``n`` dialogues like ``kind`` (coqa, quac, hotpotqa); ``turns`` fixes the turns per dialogue."""
    makers: dict[str, Callable[[random.Random, int | None], tuple[str, list[Turn]]]] = {
        "coqa": make_coqa, "quac": make_quac, "hotpotqa": make_hotpotqa}
    if kind not in makers:
        raise ValueError(f"unknown synthetic workload {kind!r}; known: {', '.join(makers)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if turns is not None and (isinstance(turns, bool) or not isinstance(turns, int) or turns < 1):
        raise ValueError(f"turns must be a positive integer or None, got {turns!r}")
    if kind == "hotpotqa" and turns is not None and turns > MAX_HOTPOTQA_TURNS:
        raise ValueError(f"hotpotqa dialogues have at most {MAX_HOTPOTQA_TURNS} turns (questions that "
                         f"share their first supporting paragraph), got {turns}")
    dialogues = []
    for i in range(n):
        rng = random.Random(f"mercato-synthetic/{kind}/{seed}/{i}")
        context, dialogue_turns = makers[kind](rng, turns)
        dialogues.append(Dialogue(f"{kind}-s{seed}-{i:05d}", kind, "synthetic", context, dialogue_turns))
    return dialogues
