"""Answer evaluators: ROUGE-L F1, the token-span check and the last-line correctness label."""

import pytest

from mercato.workloads.evaluate import is_correct, last_line, normalize_tokens, rouge_l_f1, token_span_match


def test_rouge_l_f1_known_values():
    assert rouge_l_f1("the red lantern", "the red lantern") == 1.0
    assert rouge_l_f1("blue", "red") == 0.0
    # LCS "red lantern" = 2 tokens: precision 2/7, recall 2/3 -> F1 0.4
    assert rouge_l_f1("I think it was a red lantern.", "the red lantern") == pytest.approx(0.4)
    assert rouge_l_f1("", "anything") == 0.0


def test_token_span_match_normalises_case_punctuation_articles_and_numbers():
    assert token_span_match("It was THE Red Lantern!", "a red lantern")
    assert token_span_match("She was twelve years old", "12 years")
    assert token_span_match("about 1,000 people came", "1000 people")
    assert not token_span_match("red and old lantern", "red lantern")  # not contiguous
    assert not token_span_match("lantern red", "red lantern")  # order matters
    assert not token_span_match("anything", "")  # an empty gold matches nothing
    assert normalize_tokens("The Cat's 3 hats") == ["cat", "s", "3", "hats"]


def test_is_correct_scores_the_last_line_at_threshold_0_3():
    reasoning = "Looking at the passage, the answer is clearly stated\n\nin the barn\n"
    assert last_line(reasoning) == "in the barn"
    assert is_correct(reasoning, "in a barn")
    # the same words buried in a long single line fall below 0.3
    assert not is_correct("the passage says many things and somewhere it mentions a barn too", "in a barn")
    assert is_correct("red lantern", "the red lantern")  # F1 0.8
    assert not is_correct("the lantern was", "a red old lantern stand")  # F1 0.25 < 0.3
    assert is_correct("the lantern was", "a red old lantern stand", threshold=0.2)
    assert not is_correct("", "yes")
