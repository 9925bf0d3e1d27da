"""Answer evaluators of the IEMAS reference: ROUGE-L F1 and a token-span check.

Both compare a model's output with a gold answer. :func:`is_correct` is the correctness label
the gateway learns from: ROUGE-L F1 between the *last line* of the output and the gold answer,
at least 0.3 (the workloads' instructions ask for the answer alone on the last line, so a short
reasoning preamble does not dilute the score).
"""

from __future__ import annotations

import re
from functools import cache

from rouge_score import rouge_scorer

CORRECT_THRESHOLD = 0.3
_ARTICLES = frozenset({"a", "an", "the"})
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50",
    "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90", "hundred": "100",
}
_DIGIT_GROUPS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


@cache
def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"])


def rouge_l_f1(prediction: str, gold: str) -> float:
    """ROUGE-L F1 of ``prediction`` against ``gold`` (rouge-score, lower-cased, no stemming)."""
    return float(_scorer().score(gold, prediction)["rougeL"].fmeasure)


def normalize_tokens(text: str) -> list[str]:
    """Lower-cased word tokens, punctuation and articles dropped, number words as digits."""
    text = _DIGIT_GROUPS.sub("", text.lower())
    return [_NUMBER_WORDS.get(t, t) for t in _TOKEN.findall(text) if t not in _ARTICLES]


def token_span_match(prediction: str, gold: str) -> bool:
    """True when the normalised gold tokens occur as one contiguous run in the prediction."""
    want = normalize_tokens(gold)
    have = normalize_tokens(prediction)
    if not want:
        return False
    n = len(want)
    return any(have[i:i + n] == want for i in range(len(have) - n + 1))


def last_line(text: str) -> str:
    """The last non-blank line of ``text`` ('' when there is none)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def is_correct(prediction: str, gold: str, threshold: float = CORRECT_THRESHOLD) -> bool:
    """ROUGE-L F1 between the last line of ``prediction`` and ``gold`` is at least ``threshold``."""
    return rouge_l_f1(last_line(prediction), gold) >= threshold
