"""What the simulated model says: reply text, its length and whether it is correct.

All randomness for one request comes from one keyed hash of (engine seed, request key), never
from a shared generator, so a request's answer does not depend on which requests came before it
or on their order. Because the key does not include the model, two engines with the same seed
draw the same uniforms for a request: the draw acts as the question's difficulty, and a model
with a higher quality for the domain answers correctly every question that a weaker one does.

Reply shape: a short lead-in sized to the drawn output length, then the answer on the last line
(the line the IEMAS evaluator compares with the gold answer). A correct reply's last line is the
gold answer; a wrong one's is a span of prompt words that shares no word with the gold answer.

Output lengths (completion tokens) are log-normal per domain, with medians and spreads chosen
for the short extractive answers of CoQA, the longer spans of QuAC and the reasoning of
HotpotQA (assumptions), and are capped by ``max_tokens``.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from statistics import NormalDist

from mercato.engine.tokenizer import CHARS_PER_TOKEN

# domain -> (median completion tokens, log-space standard deviation)
OUTPUT_LENGTH: dict[str, tuple[float, float]] = {
    "coqa": (14.0, 0.6),
    "quac": (28.0, 0.6),
    "hotpotqa": (48.0, 0.6),
    "default": (32.0, 0.8),
}
LEAD_IN = (
    "Looking at the passage, the relevant detail is stated directly in the text and the question "
    "asks only for that detail, so the answer below restates it as briefly as possible. Checking "
    "the surrounding sentences confirms the reading and rules out the other candidates that the "
    "passage mentions nearby, which leaves a single answer consistent with the whole context. "
)
FALLBACK_WRONG = "unknown"
NO_GOLD_SHORTEST = "Sure."  # the reply when the drawn length leaves no room for a lead-in
_WORD = re.compile(r"[A-Za-z0-9']+")
_U64 = float(1 << 64)
_MASK64 = (1 << 64) - 1
_QUANTILE_STEPS = 4096
# standard-normal quantiles at the midpoints of 4,096 equal-probability bins: a table lookup
# keeps the per-request draw cheap (the in-process engine answers tens of thousands a second)
_Z = tuple(NormalDist().inv_cdf((i + 0.5) / _QUANTILE_STEPS) for i in range(_QUANTILE_STEPS))
_MARKER_WORDS = frozenset({"system", "developer", "user", "assistant", "tool", "end"})


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply before truncation to ``max_tokens``; ``correct`` is None without a gold answer."""

    text: str
    correct: bool | None


def draw_reply(seed: int, key: str, prompt: str, domain: str, gold: str | None,
               quality: float, reserved_chars: int) -> Reply:
    """The reply to ``prompt``, sized so that it plus ``reserved_chars`` fills the drawn length."""
    draw = int.from_bytes(hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=24).digest())
    u_correct = (draw >> 128) / _U64
    u_length = ((draw >> 64) & _MASK64) / _U64
    u_wrong = (draw & _MASK64) / _U64
    room = output_tokens(domain, u_length) * CHARS_PER_TOKEN - reserved_chars
    if gold is None:
        return Reply(_lead_in(room) or NO_GOLD_SHORTEST, None)
    correct = u_correct < quality
    answer = gold if correct else wrong_answer(prompt, gold, u_wrong)
    lead = _lead_in(room - len(answer) - 1)
    return Reply(f"{lead}\n{answer}" if lead else answer, correct)


def output_tokens(domain: str, u: float) -> int:
    """The ``u``-quantile (to 1/4096) of the domain's log-normal completion length, at least 1."""
    median, sigma = OUTPUT_LENGTH.get(domain, OUTPUT_LENGTH["default"])
    z = _Z[min(int(u * _QUANTILE_STEPS), _QUANTILE_STEPS - 1)]
    return max(1, round(median * math.exp(sigma * z)))


def wrong_answer(prompt: str, gold: str, u: float) -> str:
    """A span of prompt words as long as the gold answer (1-3 words) sharing no word with it."""
    gold_words = {w.lower() for w in _WORD.findall(gold)}
    size = min(3, max(1, len(gold_words)))
    n = len(prompt)
    for attempt in range(4):
        start = int(((u + attempt * 0.381966) % 1.0) * n)
        words = _WORD.findall(prompt, start, start + 24 * size + 24)[1:size + 1]
        lowered = {w.lower() for w in words}
        if len(words) == size and not lowered & gold_words and not lowered & _MARKER_WORDS:
            return " ".join(words)
    return FALLBACK_WRONG


def _lead_in(chars: int) -> str:
    """About ``chars`` characters of lead-in prose, cut at a word boundary ('' when too short)."""
    if chars < 8:
        return ""
    text = (LEAD_IN * (chars // len(LEAD_IN) + 1))[:chars]
    cut = text.rfind(" ")
    return text[:cut] if cut > 0 else text
