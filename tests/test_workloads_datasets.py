"""Loaders of the official CoQA / QuAC / HotpotQA layouts, the bundled sample, workload selection."""

import json
from collections import Counter

import pytest

from mercato.workloads.datasets import (
    load_coqa,
    load_file,
    load_hotpotqa,
    load_quac,
    load_workload,
)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


COQA = {"version": "1.0", "data": [{
    "source": "mctest", "id": "3dr23u6we5exclen4th8uq9rb42tel", "filename": "mc160.test.41",
    "story": "Once upon a time, in a barn near a farm house, there lived a little white kitten named Cotton.",
    "questions": [{"input_text": "what color was cotton?", "turn_id": 1},
                  {"input_text": "where did she live?", "turn_id": 2}],
    "answers": [{"span_start": 59, "span_end": 93, "span_text": "a little white kitten named Cotton",
                 "input_text": "white", "turn_id": 1},
                {"span_start": 18, "span_end": 49, "span_text": "in a barn near a farm house",
                 "input_text": "in a barn", "turn_id": 2}],
}]}

QUAC = {"data": [{
    "title": "Dance band", "section_title": "Early years", "background": "...",
    "paragraphs": [{
        "id": "C_5ab583f64dfb4f6eabdd6de2b7d1d5d5_1",
        "context": "In 1962 the band toured Europe. They split in 1965. CANNOTANSWER",
        "qas": [{"question": "Where did they tour?", "id": "C_5ab5_q#0", "followup": "y", "yesno": "x",
                 "answers": [{"text": "Europe", "answer_start": 24}],
                 "orig_answer": {"text": "the band toured Europe", "answer_start": 12}},
                {"question": "Did they win awards?", "id": "C_5ab5_q#1", "followup": "n", "yesno": "x",
                 "answers": [{"text": "CANNOTANSWER", "answer_start": 52}]}],
    }],
}]}


def hotpot_official(qid, first_title, answer="yes"):
    return {"_id": qid, "question": f"question {qid}?", "answer": answer, "type": "bridge", "level": "easy",
            "supporting_facts": [[first_title, 0], [f"Other {qid}", 1]],
            "context": [[first_title, ["A first sentence.", " A second one."]],
                        [f"Other {qid}", ["Other text.", " More."]],
                        [f"Distractor {qid}", ["Noise."]]]}


def test_coqa_official_layout(tmp_path):
    [dialogue] = load_coqa(write(tmp_path, "coqa-dev-v1.0.json", COQA))
    assert dialogue.dialogue_id == "3dr23u6we5exclen4th8uq9rb42tel"
    assert dialogue.domain == "coqa" and dialogue.source == "mctest"
    assert dialogue.context.startswith("Once upon a time")
    assert [(t.question, t.answer) for t in dialogue.turns] == [
        ("what color was cotton?", "white"), ("where did she live?", "in a barn")]


def test_quac_official_layout_and_cannotanswer(tmp_path):
    [dialogue] = load_quac(write(tmp_path, "val_v0.2.json", QUAC))
    assert dialogue.domain == "quac"
    assert dialogue.context.startswith("Dance band - Early years\n\n")
    assert not dialogue.context.endswith("CANNOTANSWER")  # the sentinel span is not part of the text
    assert dialogue.turns[0].answer == "the band toured Europe"  # orig_answer wins over answers[0]
    assert dialogue.turns[1].answer == "CANNOTANSWER"


def test_hotpotqa_official_and_hugging_face_layouts_agree(tmp_path):
    official = [hotpot_official("q1", "Alpha")]
    record = official[0]
    hf = [{"id": "q1", "question": record["question"], "answer": record["answer"],
           "supporting_facts": {"title": ["Alpha", "Other q1"], "sent_id": [0, 1]},
           "context": {"title": [p[0] for p in record["context"]],
                       "sentences": [p[1] for p in record["context"]]}}]
    a = load_hotpotqa(write(tmp_path, "hotpot_dev_distractor_v1.json", official))
    b = load_hotpotqa(write(tmp_path, "hf.json", hf))
    assert a == b
    [dialogue] = a
    assert dialogue.context.split("\n\n")[0] == "Alpha: A first sentence. A second one."
    assert len(dialogue.context.split("\n\n")) == 3


def test_hotpotqa_groups_by_first_supporting_title_up_to_five(tmp_path):
    records = [hotpot_official(f"s{k}", "Shared") for k in range(7)] + [hotpot_official("lone", "Lone")]
    dialogues = load_hotpotqa(write(tmp_path, "h.json", records))
    assert [len(d.turns) for d in dialogues] == [5, 2, 1]
    first = dialogues[0]
    assert first.dialogue_id == "s0"
    # every question's supporting paragraphs are in the shared context; later distractors are not
    for k in range(5):
        assert f"Other s{k}:" in first.context
    assert "Distractor s0:" in first.context and "Distractor s1:" not in first.context
    assert load_hotpotqa(write(tmp_path, "h.json", records), max_turns=1)[0].turns == first.turns[:1]


def test_bundled_hotpotqa_sample_loads_without_a_path():
    dialogues = load_hotpotqa()
    assert len(dialogues) == 100  # the first 100 dev questions have distinct first supporting titles
    first = dialogues[0]
    assert first.turns[0].question == "Were Scott Derrickson and Ed Wood of the same nationality?"
    assert first.turns[0].answer == "yes"
    assert "Scott Derrickson:" in first.context and first.domain == "hotpotqa"
    paragraphs = Counter(len(d.context.split("\n\n")) for d in dialogues)
    assert paragraphs == {10: 99, 2: 1}  # one record of the sample comes with its two gold paragraphs only


@pytest.mark.parametrize(("data", "message"), [
    ("{not json", "not valid JSON"),
    ({"version": "1.0"}, "missing field 'data'"),
    ({"data": [{"id": "x", "story": "s", "questions": [{"turn_id": 1, "input_text": "q"}], "answers": []}]},
     "no answer with turn_id 1"),
    ({"data": [{"id": "x", "story": "s", "questions": [{"turn_id": "1", "input_text": "q"}],
                "answers": [{"turn_id": 1, "input_text": "a"}]}]}, r"questions\[0\].turn_id: expected int"),
    ({"data": [{"id": "x", "story": "  ", "questions": [], "answers": []}]}, "no questions"),
])
def test_coqa_malformed_files_name_the_problem(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(ValueError, match=message):
        load_coqa(path)


def test_quac_and_hotpotqa_malformed_files_name_the_problem(tmp_path):
    qas = [{"question": "q", "answers": []}]
    bad_quac = {"data": [{"paragraphs": [{"id": "p", "context": "text", "qas": qas}]}]}
    with pytest.raises(ValueError, match=r"qas\[0\]: neither 'orig_answer' nor a non-empty 'answers'"):
        load_quac(write(tmp_path, "q.json", bad_quac))
    broken = hotpot_official("q", "T")
    broken["supporting_facts"] = []
    with pytest.raises(ValueError, match="supporting_facts: expected a non-empty list"):
        load_hotpotqa(write(tmp_path, "h.json", [broken]))
    broken = hotpot_official("q", "T")
    broken["context"][1] = ["only a title"]
    with pytest.raises(ValueError, match=r"context\[1\]: expected a title and a list of sentences"):
        load_hotpotqa(write(tmp_path, "h.json", [broken]))
    with pytest.raises(ValueError, match="no such file"):
        load_coqa(tmp_path / "missing.json")


def test_load_file_recognises_each_layout(tmp_path):
    assert load_file(write(tmp_path, "a.json", COQA))[0].domain == "coqa"
    assert load_file(write(tmp_path, "b.json", QUAC))[0].domain == "quac"
    assert load_file(write(tmp_path, "c.json", [hotpot_official("q", "T")]))[0].domain == "hotpotqa"
    with pytest.raises(ValueError, match="not a CoQA"):
        load_file(write(tmp_path, "d.json", {"data": [{"something": 1}]}))


def test_load_workload_selects_synthetic_sample_or_file(tmp_path):
    synthetic = load_workload("quac", dialogues=3, seed=1, turns=2)
    assert len(synthetic) == 3 and all(len(d.turns) == 2 and d.source == "synthetic" for d in synthetic)
    sample = load_workload("hotpotqa-sample", dialogues=4)
    assert len(sample) == 4 and sample[0].source == "wikipedia"
    from_file = load_workload(str(write(tmp_path, "coqa.json", COQA)), dialogues=10, turns=1)
    assert len(from_file) == 1 and len(from_file[0].turns) == 1
    with pytest.raises(ValueError, match="unknown workload 'nope'"):
        load_workload("nope", dialogues=1)
