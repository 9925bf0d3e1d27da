"""Dialogues and how a turn becomes an OpenAI chat request.

A dialogue is one context (a passage, a Wikipedia section, a set of paragraphs) and a sequence of
questions with gold answers. The request for turn t is the system message (instruction and
context), then the questions and the model's own replies alternating, then question t. Replies
are appended verbatim, so the messages of turn t are a prefix of those of turn t+1; rendered with
:func:`mercato.engine.chat.render_chat`, the prompt of turn t is then a byte prefix of the next
one, which is what prefix caching and the gateway's affinity estimate depend on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DOMAINS = ("coqa", "quac", "hotpotqa")

# Every instruction asks for the answer alone on the last line: the evaluators (IEMAS reference)
# score the last line of the output.
INSTRUCTIONS: dict[str, str] = {
    "coqa": "Answer each question about the passage in a few words taken from it. "
            "Put the answer alone on the last line.",
    "quac": "Answer each question about the section with a short span copied from it, or with "
            "CANNOTANSWER when the section does not say. Put the answer alone on the last line.",
    "hotpotqa": "Answer the question using the paragraphs; it needs facts from two of them. "
                "Reason briefly if you must, then put the short answer alone on the last line.",
}
DEFAULT_INSTRUCTION = "Answer the question about the text. Put the answer alone on the last line."


@dataclass(frozen=True, slots=True)
class Turn:
    """One question and its gold answer."""

    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class Dialogue:
    """A context and the turns asked about it.

    ``domain`` names the workload (``coqa``, ``quac``, ``hotpotqa``; the engine reads it to pick
    the answer quality), ``source`` where the text comes from (sent as ``X-Mercato-Source``).
    """

    dialogue_id: str
    domain: str
    source: str
    context: str
    turns: list[Turn]

    def __post_init__(self) -> None:
        if not self.dialogue_id:
            raise ValueError("a dialogue needs a non-empty dialogue_id")
        if not self.context.strip():
            raise ValueError(f"dialogue {self.dialogue_id!r} has an empty context")
        if not self.turns:
            raise ValueError(f"dialogue {self.dialogue_id!r} has no turns")

    def truncated(self, turns: int | None) -> Dialogue:
        """The same dialogue with at most ``turns`` turns (all when None)."""
        if turns is None or turns >= len(self.turns):
            return self
        if turns < 1:
            raise ValueError(f"turns must be at least 1, got {turns}")
        return Dialogue(self.dialogue_id, self.domain, self.source, self.context, self.turns[:turns])


def paragraphs_context(paragraphs: Sequence[tuple[str, str]]) -> str:
    """Titled paragraphs as one context: 'Title: text' blocks separated by blank lines."""
    return "\n\n".join(f"{title}: {text.strip()}" for title, text in paragraphs)


def system_message(dialogue: Dialogue) -> str:
    """The system message: the domain's instruction, a blank line, the context."""
    return f"{INSTRUCTIONS.get(dialogue.domain, DEFAULT_INSTRUCTION)}\n\n{dialogue.context}"


def dialogue_messages(dialogue: Dialogue, turn: int, replies: Sequence[str]) -> list[dict[str, str]]:
    """OpenAI chat messages for 1-based ``turn``, given the model's replies to the earlier turns.

    ``replies`` must hold at least ``turn - 1`` replies; the first ``turn - 1`` are used verbatim.
    """
    if isinstance(turn, bool) or not isinstance(turn, int) or not 1 <= turn <= len(dialogue.turns):
        raise ValueError(f"turn must be an integer in 1..{len(dialogue.turns)} for dialogue "
                         f"{dialogue.dialogue_id!r}, got {turn!r}")
    if len(replies) < turn - 1:
        raise ValueError(f"turn {turn} needs the {turn - 1} earlier replies, got {len(replies)}")
    messages = [{"role": "system", "content": system_message(dialogue)}]
    for k in range(turn - 1):
        reply = replies[k]
        if not isinstance(reply, str):
            raise ValueError(f"replies[{k}] must be a string, got {type(reply).__name__}")
        messages.append({"role": "user", "content": dialogue.turns[k].question})
        messages.append({"role": "assistant", "content": reply})
    messages.append({"role": "user", "content": dialogue.turns[turn - 1].question})
    return messages


def gold_history_turns(dialogue: Dialogue) -> list[tuple[list[dict[str, str]], str]]:
    """Every turn's messages with the *gold* answers as the earlier replies, and its gold answer.

    Replaying these gives every server byte-identical prompts, whatever it replies; engines can
    then be compared request by request (see :mod:`mercato.engine.calibration`).
    """
    golds = [turn.answer for turn in dialogue.turns]
    return [(dialogue_messages(dialogue, t, golds), golds[t - 1]) for t in range(1, len(golds) + 1)]
