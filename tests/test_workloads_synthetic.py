"""Synthetic CoQA / QuAC / HotpotQA look-alikes: statistics, determinism, spans; the prefix property."""

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mercato.engine.chat import render_chat
from mercato.workloads import Dialogue, Turn, dialogue_messages, synthetic_dialogues
from mercato.workloads.synthetic import PUBLISHED
from mercato.workloads.synthetic_text import count_tokens, count_words

KINDS = ("coqa", "quac", "hotpotqa")


@pytest.mark.parametrize("kind", KINDS)
def test_statistics_are_near_the_published_ones(kind):
    dialogues = synthetic_dialogues(kind, n=200, seed=11)
    published = PUBLISHED[kind]
    count = count_tokens if published.unit == "tokens" else count_words
    turns = statistics.fmean(len(d.turns) for d in dialogues)
    context = statistics.fmean(count(d.context) for d in dialogues)
    answer = statistics.fmean(count(t.answer) for d in dialogues for t in d.turns)
    assert turns == pytest.approx(published.turns, rel=0.08)
    assert context == pytest.approx(published.context, rel=0.08)
    # HotpotQA's answers here are names, towns, dates (1-3 words) against 2.2 in the sample
    assert answer == pytest.approx(published.answer, rel=0.2 if kind == "hotpotqa" else 0.1)


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_by_seed_and_extendable(kind):
    a = synthetic_dialogues(kind, n=5, seed=3)
    assert a == synthetic_dialogues(kind, n=5, seed=3)
    assert synthetic_dialogues(kind, n=8, seed=3)[:5] == a  # dialogue i depends on (kind, seed, i) only
    assert [d.context for d in synthetic_dialogues(kind, n=5, seed=4)] != [d.context for d in a]
    assert len({d.dialogue_id for d in a}) == 5


@pytest.mark.parametrize("kind", KINDS)
def test_every_gold_answer_is_a_span_of_the_context(kind):
    for dialogue in synthetic_dialogues(kind, n=60, seed=5):
        assert dialogue.domain == kind and dialogue.source == "synthetic"
        for turn in dialogue.turns:
            assert turn.answer and turn.answer in dialogue.context, (dialogue.dialogue_id, turn)


def test_hotpotqa_shape_and_grouped_turns():
    for dialogue in synthetic_dialogues("hotpotqa", n=20, seed=2):
        assert len(dialogue.turns) == 1
        assert len(dialogue.context.split("\n\n")) == 10  # 2 gold + 8 distractors
    grouped = synthetic_dialogues("hotpotqa", n=10, seed=2, turns=5)
    for dialogue in grouped:
        assert len(dialogue.turns) == 5 and len(dialogue.context.split("\n\n")) == 10
        titles = [block.split(":", 1)[0] for block in dialogue.context.split("\n\n")]
        shared = [title for title in titles if all(title in t.question for t in dialogue.turns)]
        assert len(shared) == 1  # the turns share their first gold paragraph (the film's)
    with pytest.raises(ValueError, match="at most 5 turns"):
        synthetic_dialogues("hotpotqa", n=1, turns=6)


def test_turns_argument_and_bad_arguments():
    assert {len(d.turns) for d in synthetic_dialogues("coqa", n=10, seed=0, turns=3)} == {3}
    assert {len(d.turns) for d in synthetic_dialogues("quac", n=10, seed=0, turns=12)} == {12}
    assert synthetic_dialogues("coqa", n=0) == []
    with pytest.raises(ValueError, match="unknown synthetic workload 'squad'"):
        synthetic_dialogues("squad", n=1)
    with pytest.raises(ValueError, match="turns must be a positive integer"):
        synthetic_dialogues("coqa", n=1, turns=0)
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        synthetic_dialogues("coqa", n=-1)


@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 50),
       replies=st.lists(st.text(max_size=40), min_size=4, max_size=4))
def test_turn_t_messages_are_a_prefix_of_turn_t_plus_1(kind, seed, replies):
    dialogue = synthetic_dialogues(kind, n=1, seed=seed, turns=5 if kind == "hotpotqa" else None)[0]
    last = min(len(dialogue.turns), 5)
    for turn in range(1, last):
        now = dialogue_messages(dialogue, turn, replies[:turn - 1])
        after = dialogue_messages(dialogue, turn + 1, replies[:turn])
        assert after[:len(now)] == now
        assert after[len(now)] == {"role": "assistant", "content": replies[turn - 1]}  # verbatim
        assert render_chat(after).startswith(render_chat(now))


def test_message_layout_and_errors():
    dialogue = Dialogue("d", "coqa", "synthetic", "The passage.", [Turn("Q1?", "a"), Turn("Q2?", "b")])
    messages = dialogue_messages(dialogue, 2, ["first reply", "ignored extra reply"])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].endswith("\n\nThe passage.") and "last line" in messages[0]["content"]
    assert [m["content"] for m in messages[1:]] == ["Q1?", "first reply", "Q2?"]
    with pytest.raises(ValueError, match=r"turn must be an integer in 1..2"):
        dialogue_messages(dialogue, 3, ["a", "b"])
    with pytest.raises(ValueError, match="needs the 1 earlier replies, got 0"):
        dialogue_messages(dialogue, 2, [])
    with pytest.raises(ValueError, match="no turns"):
        Dialogue("d", "coqa", "synthetic", "text", [])
    assert dialogue.truncated(1).turns == [Turn("Q1?", "a")]
