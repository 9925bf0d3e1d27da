"""Loaders for the official files of CoQA, QuAC and HotpotQA, and the bundled HotpotQA sample.

Files are read from a local path only; nothing is downloaded. Malformed input raises ValueError
naming the file, the record and the field.

* CoQA ``coqa-dev-v1.0.json``: ``{"data": [{"id", "source", "story", "questions": [{"turn_id",
  "input_text"}], "answers": [{"turn_id", "input_text"}]}]}``; one dialogue per story, the
  free-form ``input_text`` answer as gold.
* QuAC ``val_v0.2.json`` (SQuAD-like): ``{"data": [{"title", "section_title", "paragraphs":
  [{"id", "context", "qas": [{"question", "orig_answer": {"text"}, "answers": [{"text"}]}]}]}]}``;
  one dialogue per paragraph. The context ends with the token ``CANNOTANSWER`` (the span
  unanswerable questions point at); it is dropped from the context and stays the gold answer
  of such questions, which the QuAC instruction tells the model to give.
* HotpotQA ``hotpot_dev_distractor_v1.json`` (a list; ``context: [[title, [sentences]]]``,
  ``supporting_facts: [[title, sent_id]]``) or the Hugging Face layout (``context: {title: [...],
  sentences: [[...]]}``, ``supporting_facts: {title: [...], sent_id: [...]}``). Questions sharing
  the title of their first supporting fact are grouped into dialogues of up to 5 turns, as the
  IEMAS authors did; the others stay single-turn. A group's context is the first question's
  paragraphs plus the supporting paragraphs of the later ones that are not already in it, so
  every question stays answerable and the context stays near ten paragraphs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from mercato.workloads.dialogue import Dialogue, Turn, paragraphs_context
from mercato.workloads.synthetic import MAX_HOTPOTQA_TURNS, synthetic_dialogues

BUNDLED_HOTPOTQA = "hotpot_dev_distractor_first100.json"
SAMPLE_WORKLOAD = "hotpotqa-sample"
SYNTHETIC_WORKLOADS = ("coqa", "quac", "hotpotqa")
CANNOTANSWER = "CANNOTANSWER"


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]`` checked to be of ``kind``; ValueError naming ``where`` otherwise."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise ValueError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def _text(obj: Any, key: str, where: str) -> str:
    """A non-empty string field."""
    value = _get(obj, key, str, where)
    if not value.strip():
        raise ValueError(f"{where}.{key}: empty")
    return value


def _records(data: Any, where: str) -> Iterator[tuple[int, Any]]:
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a list, got {type(data).__name__}")
    return enumerate(data)


def _data(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, entry) for each entry of the file's top-level ``data`` list (CoQA, QuAC)."""
    root = _read_json(path)
    for i, entry in _records(_get(root, "data", list, path.name), f"{path.name}: data"):
        yield f"{path.name}: data[{i}]", entry


# -- CoQA -----------------------------------------------------------------------------------------


def load_coqa(path: str | Path) -> list[Dialogue]:
    """Dialogues of a CoQA file (official layout, e.g. ``coqa-dev-v1.0.json``)."""
    dialogues = []
    for where, story in _data(Path(path)):
        answers: dict[int, str] = {}
        for k, answer in _records(_get(story, "answers", list, where), f"{where}.answers"):
            at = f"{where}.answers[{k}]"
            answers[_get(answer, "turn_id", int, at)] = _text(answer, "input_text", at)
        turns = []
        for k, question in _records(_get(story, "questions", list, where), f"{where}.questions"):
            at = f"{where}.questions[{k}]"
            turn_id = _get(question, "turn_id", int, at)
            if turn_id not in answers:
                raise ValueError(f"{at}: no answer with turn_id {turn_id}")
            turns.append(Turn(_text(question, "input_text", at), answers[turn_id]))
        if not turns:
            raise ValueError(f"{where}: no questions")
        source = story.get("source")
        source = source if isinstance(source, str) and source else "coqa"
        passage = _text(story, "story", where)
        dialogues.append(Dialogue(_text(story, "id", where), "coqa", source, passage, turns))
    return dialogues


# -- QuAC -----------------------------------------------------------------------------------------


def load_quac(path: str | Path) -> list[Dialogue]:
    """Dialogues of a QuAC file (official SQuAD-like layout, e.g. ``val_v0.2.json``)."""
    dialogues = []
    for where, article in _data(Path(path)):
        paragraphs = _get(article, "paragraphs", list, where)
        heading = " - ".join(part for part in (article.get("title"), article.get("section_title"))
                             if isinstance(part, str) and part.strip())
        for j, paragraph in _records(paragraphs, f"{where}.paragraphs"):
            at = f"{where}.paragraphs[{j}]"
            context = _text(paragraph, "context", at).rstrip()
            if context.endswith(CANNOTANSWER):
                context = context[: -len(CANNOTANSWER)].rstrip()
            turns = [Turn(_text(qa, "question", f"{at}.qas[{k}]"), _quac_answer(qa, f"{at}.qas[{k}]"))
                     for k, qa in _records(_get(paragraph, "qas", list, at), f"{at}.qas")]
            if not turns:
                raise ValueError(f"{at}: no questions")
            body = f"{heading}\n\n{context}" if heading else context
            dialogues.append(Dialogue(_text(paragraph, "id", at), "quac", "wikipedia", body, turns))
    return dialogues


def _quac_answer(qa: Any, where: str) -> str:
    """The dialogue's own answer (``orig_answer``), else the first of ``answers``."""
    if isinstance(qa, dict) and isinstance(qa.get("orig_answer"), dict):
        return _text(qa["orig_answer"], "text", f"{where}.orig_answer")
    answers = _get(qa, "answers", list, where)
    if not answers:
        raise ValueError(f"{where}: neither 'orig_answer' nor a non-empty 'answers'")
    return _text(answers[0], "text", f"{where}.answers[0]")


# -- HotpotQA -------------------------------------------------------------------------------------


def load_hotpotqa(path: str | Path | None = None, max_turns: int = MAX_HOTPOTQA_TURNS) -> list[Dialogue]:
    """Dialogues of a HotpotQA file (official or Hugging Face layout); the bundled sample when None."""
    if max_turns < 1:
        raise ValueError(f"max_turns must be at least 1, got {max_turns}")
    if path is None:
        resource = resources.files("mercato.workloads").joinpath("data", BUNDLED_HOTPOTQA)
        name, root = BUNDLED_HOTPOTQA, json.loads(resource.read_text(encoding="utf-8"))
    else:
        path = Path(path)
        name, root = path.name, _read_json(path)
    questions = [_hotpot_question(record, f"{name}: [{i}]", f"{Path(name).stem}-{i}")
                 for i, record in _records(root, name)]
    groups: dict[str, list[_HotpotQuestion]] = {}
    dialogues = []
    for question in questions:
        group = groups.setdefault(question.first_title, [])
        group.append(question)
        if len(group) == max_turns:
            dialogues.append(_hotpot_dialogue(group))
            groups[question.first_title] = []
    dialogues.extend(_hotpot_dialogue(group) for group in groups.values() if group)
    order = {q.qid: k for k, q in enumerate(questions)}
    return sorted(dialogues, key=lambda d: order[d.dialogue_id])


class _HotpotQuestion:
    """One HotpotQA record, normalised across the two layouts."""

    def __init__(self, qid: str, question: str, answer: str, paragraphs: list[tuple[str, str]],
                 support: list[str]) -> None:
        self.qid = qid
        self.turn = Turn(question, answer)
        self.paragraphs = paragraphs
        self.support = support
        self.first_title = support[0]


def _hotpot_question(record: Any, where: str, fallback_id: str) -> _HotpotQuestion:
    qid = record.get("_id", record.get("id", fallback_id)) if isinstance(record, dict) else fallback_id
    question, answer = _text(record, "question", where), _text(record, "answer", where)
    context = _get(record, "context", (list, dict), where)
    if isinstance(context, dict):  # Hugging Face: {title: [...], sentences: [[...]]}
        titles = _get(context, "title", list, f"{where}.context")
        sentences = _get(context, "sentences", list, f"{where}.context")
        if len(titles) != len(sentences):
            raise ValueError(f"{where}.context: {len(titles)} titles but {len(sentences)} sentence lists")
        pairs = list(zip(titles, sentences, strict=True))
    else:  # official: [[title, [sentences]], ...]
        pairs = [tuple(p) if isinstance(p, list) and len(p) == 2 else (None, None) for p in context]
    paragraphs = []
    for k, (title, sents) in enumerate(pairs):
        if not (isinstance(title, str) and isinstance(sents, list)
                and all(isinstance(sent, str) for sent in sents)):
            raise ValueError(f"{where}.context[{k}]: expected a title and a list of sentences")
        paragraphs.append((title, "".join(sents)))
    facts = _get(record, "supporting_facts", (list, dict), where)
    if isinstance(facts, dict):
        support = _get(facts, "title", list, f"{where}.supporting_facts")
    else:
        support = [f[0] if isinstance(f, list) and f else None for f in facts]
    if not support or not all(isinstance(t, str) for t in support):
        raise ValueError(f"{where}.supporting_facts: expected a non-empty list of paragraph titles")
    if not paragraphs:
        raise ValueError(f"{where}.context: no paragraphs")
    return _HotpotQuestion(str(qid), question, answer, paragraphs, support)


def _hotpot_dialogue(group: list[_HotpotQuestion]) -> Dialogue:
    """One dialogue from questions sharing their first supporting title (see module doc)."""
    first = group[0]
    paragraphs = list(first.paragraphs)
    present = {title for title, _ in paragraphs}
    for question in group[1:]:
        for title, text in question.paragraphs:
            if title in question.support and title not in present:
                paragraphs.append((title, text))
                present.add(title)
    return Dialogue(first.qid, "hotpotqa", "wikipedia", paragraphs_context(paragraphs),
                    [q.turn for q in group])


# -- any file, any workload ------------------------------------------------------------------------


def load_file(path: str | Path) -> list[Dialogue]:
    """Dialogues of a CoQA, QuAC or HotpotQA file, its format recognised from its layout."""
    path = Path(path)
    root = _read_json(path)
    if isinstance(root, list):
        return load_hotpotqa(path)
    data = root.get("data") if isinstance(root, dict) else None
    first = data[0] if isinstance(data, list) and data else None
    if isinstance(first, dict) and "story" in first:
        return load_coqa(path)
    if isinstance(first, dict) and "paragraphs" in first:
        return load_quac(path)
    raise ValueError(f"{path}: not a CoQA (data[].story), QuAC (data[].paragraphs[].qas) or HotpotQA "
                     "(a list of questions) file")


def load_workload(spec: str, dialogues: int, seed: int = 0, turns: int | None = None) -> list[Dialogue]:
    """What ``mercato loadgen --workload`` names: a synthetic kind, the bundled sample, or a file.

    Synthetic kinds give exactly ``dialogues`` dialogues with ``turns`` turns each (their
    dataset's distribution when None); the sample and files give their first ``dialogues``
    dialogues, each cut to at most ``turns`` turns.
    """
    if dialogues < 1:
        raise ValueError(f"dialogues must be at least 1, got {dialogues}")
    if spec in SYNTHETIC_WORKLOADS:
        return synthetic_dialogues(spec, dialogues, seed, turns)
    if spec == SAMPLE_WORKLOAD:
        loaded = load_hotpotqa()
    elif Path(spec).exists():
        loaded = load_file(spec)
    else:
        raise ValueError(f"unknown workload {spec!r}: use {', '.join(SYNTHETIC_WORKLOADS)}, "
                         f"{SAMPLE_WORKLOAD} or the path of a CoQA/QuAC/HotpotQA file")
    return [d.truncated(turns) for d in loaded[:dialogues]]
