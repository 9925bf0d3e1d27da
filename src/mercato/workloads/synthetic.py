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

Token counts for QuAC are word and punctuation tokens (:func:`count_tokens`). Every gold answer
is a span of the context, so both evaluators can credit an extractive answer. Dialogue ``i`` of a
seed depends only on (kind, seed, i): asking for more dialogues extends the list.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from mercato.workloads.dialogue import Dialogue, Turn, paragraphs_context
from mercato.workloads.vocabulary import (
    ADJECTIVES,
    ANIMALS,
    COLORS,
    DAYS,
    EMOTIONS,
    EVENTS,
    FEATURES,
    GENRES,
    JOBS,
    MONTHS,
    NATIONALITIES,
    NUMBERS,
    OBJECTS,
    ORGANISATIONS,
    OUTINGS,
    PARTS,
    PET_NAMES,
    PLACES,
    REGIONS,
    RELATIONS,
    ROLES,
    TIMES,
    NamePool,
)

MAX_HOTPOTQA_TURNS = 5
STYLES = ("bold", "restrained", "playful", "severe", "lyrical", "old-fashioned")
_TOKEN = re.compile(r"\w+|[^\w\s]")


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


def count_words(text: str) -> int:
    """Whitespace-separated words."""
    return len(text.split())


def count_tokens(text: str) -> int:
    """Word and punctuation tokens, the unit QuAC's statistics use."""
    return len(_TOKEN.findall(text))


def synthetic_dialogues(kind: str, n: int, seed: int = 0, turns: int | None = None) -> list[Dialogue]:
    """``n`` dialogues like ``kind`` (coqa, quac, hotpotqa); ``turns`` fixes the turns per dialogue."""
    makers: dict[str, Callable[[random.Random, int | None], tuple[str, list[Turn]]]] = {
        "coqa": _coqa, "quac": _quac, "hotpotqa": _hotpotqa}
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


def _binomial(rng: random.Random, trials: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(trials))


@dataclass
class _Fact:
    """A sentence of a generated text and the questions it answers (answer spans of it)."""

    sentence: str
    qas: list[tuple[str, str]]


def _pick_in_order(rng: random.Random, facts: list[_Fact], turns: int) -> list[Turn]:
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


# -- CoQA: a short story, short span answers ---------------------------------------------------


STORY_CAST = 4


class _Story:
    """The cast and setting of one CoQA-like story, and its sentence templates."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        names = NamePool(rng)
        self.town = names.town()
        genders = [rng.random() < 0.5 for _ in range(STORY_CAST)]
        self.cast = [(names.first_name(female), female) for female in genders]
        self.templates = (self._purchase, self._outing, self._home, self._relative, self._thing,
                          self._feeling, self._pet)
        self.used: set[tuple[str, str]] = set()  # (template, person): one fact of a kind per person
        self.scenes: set[str] = set()

    @property
    def exhausted(self) -> bool:
        """Every template has been used for every person."""
        return len(self.used) >= len(self.templates) * len(self.cast)

    def fact(self) -> _Fact | None:
        """A new fact sentence, or None when the drawn template is used up for the drawn person."""
        rng = self.rng
        template = rng.choice(self.templates)
        person, female = rng.choice(self.cast)
        if (template.__name__, person) in self.used:
            return None
        self.used.add((template.__name__, person))
        return template(person, female)

    def _other(self, person: str) -> str:
        return self.rng.choice([name for name, _ in self.cast if name != person])

    def _purchase(self, p: str, _: bool) -> _Fact:
        rng = self.rng
        verb, past = rng.choice((("buy", "bought"), ("find", "found"), ("sell", "sold"), ("fix", "fixed")))
        thing = f"the {rng.choice(ADJECTIVES)} {rng.choice(OBJECTS)}"
        place = f"the {rng.choice(PLACES)}"
        return _Fact(f"{p} {past} {thing} at {place}.",
                     [(f"What did {p} {verb}?", thing), (f"Where did {p} {verb} it?", f"at {place}")])

    def _outing(self, p: str, _: bool) -> _Fact:
        rng = self.rng
        q, day, time, spot = self._other(p), rng.choice(DAYS), rng.choice(TIMES), rng.choice(OUTINGS)
        return _Fact(f"{p} and {q} went to the {spot} together on {day} {time}.",
                     [(f"When did {p} go to the {spot}?", f"on {day} {time}"),
                      (f"Who went to the {spot} with {p}?", q)])

    def _home(self, p: str, female: bool) -> _Fact:
        rng = self.rng
        age, relation = rng.choice(NUMBERS[4:]), rng.choice(RELATIONS)
        poss = "her" if female else "his"
        return _Fact(f"{p} was {age} years old and lived in {self.town} with {poss} {relation}.",
                     [(f"How old was {p}?", age), (f"Where did {p} live?", f"in {self.town}"),
                      (f"Who did {p} live with?", f"{poss} {relation}")])

    def _relative(self, p: str, _: bool) -> _Fact:
        rng = self.rng
        relation, job, spot = rng.choice(RELATIONS), rng.choice(JOBS), rng.choice(PLACES)
        return _Fact(f"{p}'s {relation} worked as a {job} near the {spot}.",
                     [(f"What did {p}'s {relation} do for a living?", f"worked as a {job}"),
                      (f"Where did {p}'s {relation} work?", f"near the {spot}")])

    def _thing(self, p: str, female: bool) -> _Fact:
        rng = self.rng
        thing, count, parts = rng.choice(OBJECTS), rng.choice(NUMBERS), rng.choice(PARTS)
        color, feature = rng.choice(COLORS), rng.choice(FEATURES)
        poss = "her" if female else "his"
        return _Fact(f"{p} kept {poss} {thing} in a box that had {count} {parts} and a {color} {feature}.",
                     [(f"How many {parts} did {p}'s box have?", count),
                      (f"What else did {p}'s box have besides the {parts}?", f"a {color} {feature}")])

    def _feeling(self, p: str, female: bool) -> _Fact:
        rng = self.rng
        q, emotion = self._other(p), rng.choice(EMOTIONS)
        event = rng.choice(EVENTS).replace("her birthday", f"{'her' if female else 'his'} birthday")
        return _Fact(f"{p} felt {emotion} because {q} had {event}.",
                     [(f"How did {p} feel?", emotion),
                      (f"Why did {p} feel {emotion}?", f"because {q} had {event}")])

    def _pet(self, p: str, _: bool) -> _Fact:
        rng = self.rng
        animal, pet = rng.choice(ANIMALS), rng.choice(PET_NAMES)
        return _Fact(f"{p} had a {animal} called {pet}.",
                     [(f"What was the name of {p}'s {animal}?", pet),
                      (f"What kind of animal did {p} have?", f"a {animal}")])

    def filler(self) -> str:
        """A sentence that sets the scene and answers nothing (each one at most once per story)."""
        rng = self.rng
        for _ in range(100):
            sentence = self._scene(rng)
            if sentence not in self.scenes:
                break
        self.scenes.add(sentence)
        return sentence

    def _scene(self, rng: random.Random) -> str:
        return rng.choice((
            f"The streets of {self.town} were {rng.choice(('quiet', 'busy', 'wet', 'crowded'))} that week.",
            f"Everyone in {self.town} still talked about the {rng.choice(ADJECTIVES)} storm of last year.",
            f"It was the kind of {rng.choice(TIMES)} when the light turns everything {rng.choice(COLORS)}.",
            "Nobody could remember a summer as long and as dry as that one had been.",
            f"Somewhere down the road a radio was playing an old song about the {rng.choice(OUTINGS)}.",
            f"The shops along the main street closed early on {rng.choice(DAYS)}s.",
            f"A {rng.choice(ADJECTIVES)} fog rolled in from the hills most {rng.choice(TIMES)}s.",
            f"The bus to the {rng.choice(PLACES)} ran only twice a day, and it was usually late.",
            f"People said the {rng.choice(ADJECTIVES)} house on the hill had been empty for years.",
            f"Children played near the {rng.choice(OUTINGS)} until it got dark.",
        ))


def _coqa(rng: random.Random, turns: int | None) -> tuple[str, list[Turn]]:
    turns = turns if turns is not None else 10 + _binomial(rng, 13, 0.4)
    story = _Story(rng)
    target = rng.randint(226, 306)  # mean 266: the last sentence overshoots by about 5 words
    facts: list[_Fact] = []
    questions: set[str] = set()
    words = 0
    while words < target or len(questions) < turns:
        if story.exhausted and len(questions) < turns:
            raise ValueError(f"a CoQA-like story holds at most {len(questions)} questions, asked for {turns}")
        wants_fact = not story.exhausted and (len(questions) < turns or rng.random() < 0.5)
        fact = story.fact() if wants_fact else _Fact(story.filler(), [])
        if fact is None:
            continue
        facts.append(fact)
        words += count_words(fact.sentence)
        questions.update(question for question, _ in fact.qas)
    context = " ".join(fact.sentence for fact in facts)
    return context, _pick_in_order(rng, facts, turns)


# -- QuAC: one section of a biography, long span answers ----------------------------------------


def _quac(rng: random.Random, turns: int | None) -> tuple[str, list[Turn]]:
    turns = turns if turns is not None else 4 + _binomial(rng, 8, 0.4)
    names = NamePool(rng)
    name, female = names.person()
    surname = name.split()[-1]
    he, his = ("she", "her") if female else ("he", "his")
    year = rng.randint(1930, 1990)
    target = rng.randint(368, 408)  # mean 388: the last sentences overshoot by about 13 tokens
    facts: list[_Fact] = []
    tokens = answers = 0

    def event() -> _Fact:
        nonlocal year
        year += rng.randint(1, 3)
        town, org, role = names.town(), rng.choice(ORGANISATIONS), rng.choice(ROLES)
        clause = rng.choice((
            f"{he} joined the {org} in {town} as a {role} and toured {rng.choice(REGIONS)} with them",
            f"{he} moved to {town} to work as a {role} with the {org} for {rng.choice(NUMBERS)} seasons",
            f"{he} left the {org} after a dispute over pay and spent the winter teaching in {town}",
            f"{he} recorded {his} first album, {names.title()}, with musicians from the {org}",
            f"{he} married {names.person()[0]}, a {role} {he} had met while touring {rng.choice(REGIONS)}",
            f"{he} won the {town} prize for {his} work as a {role}, the first of several awards",
        ))
        sentence = f"In {year}, {clause}."
        about = rng.choice((f"What did {surname} do in {year}?", f"What happened in {year}?"))
        return _Fact(sentence, [(about, clause), ("What happened next?", clause)])

    def remark() -> _Fact:
        adjective = rng.choice(("difficult", "eventful", "restless", "productive", "lonely"))
        clause = rng.choice((
            f"{surname} later called these years the most {adjective} of {his} life",
            f"critics in {names.town()} described {his} style as {rng.choice(STYLES)} and {adjective}",
            f"{he} often said that {his} {rng.choice(RELATIONS)} had taught {'her' if female else 'him'} "
            f"everything about the stage",
        ))
        clause = clause[0].upper() + clause[1:]
        question = rng.choice(("Is there anything else interesting about this period?",
                               f"How did {surname} feel about that time?", "Did anyone comment on it?"))
        return _Fact(f"{clause}.", [(question, clause)])

    while tokens < target or answers < turns:
        fact = event() if rng.random() < 0.7 else remark()
        facts.append(fact)
        tokens += count_tokens(fact.sentence)
        answers += 1
    section = rng.choice(("Career", "Early career", "Later years", "Touring years"))
    context = f"{name}: {section}\n\n" + " ".join(fact.sentence for fact in facts)
    return context, _quac_turns(rng, facts, turns)


def _quac_turns(rng: random.Random, facts: list[_Fact], turns: int) -> list[Turn]:
    """``turns`` questions in section order; a fact right after the previous one may be a follow-up."""
    chosen = sorted(rng.sample(range(len(facts)), turns))
    out, previous = [], -2
    for k in chosen:
        qas = facts[k].qas
        follow = k == previous + 1 and len(qas) > 1 and rng.random() < 0.5
        question, answer = qas[-1] if follow else qas[0]
        out.append(Turn(question, answer))
        previous = k
    return out


# -- HotpotQA: ten paragraphs, a multi-hop question with a short answer -------------------------


class _Wiki:
    """Invented encyclopaedia entries (films, directors, actors, studios) for one question."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.names = NamePool(rng)

    def _tail(self, text: str, sentences: tuple[str, ...]) -> str:
        """Pad an entry to about 90 words with sentences that answer no question."""
        target = self.rng.randint(80, 96)
        pool = list(sentences)
        self.rng.shuffle(pool)
        for sentence in pool:
            if count_words(text) >= target:
                break
            text += " " + sentence
        return text

    def person(self, occupation: str) -> tuple[str, str, dict[str, str]]:
        """A person's entry: (title, text, facts with keys year, date, city, nationality)."""
        rng = self.rng
        name, female = self.names.person()
        he, his = ("She", "her") if female else ("He", "his")
        year, nationality = rng.randint(1920, 1990), rng.choice(NATIONALITIES)
        facts = {"year": str(year), "date": f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {year}",
                 "city": self.names.town(), "nationality": nationality}
        article = "an" if nationality[0] in "AEIOU" else "a"
        text = f"{name} (born {facts['date']} in {facts['city']}) is {article} {nationality} {occupation}."
        text = self._tail(text, (
            f"{he} studied at the academy of {self.names.town()} before moving abroad.",
            f"{he} is best known for {his} work on {self.names.title()} and {self.names.title()}.",
            f"{he} has been nominated for several national awards and won two of them.",
            f"In interviews {he.lower()} has named silent cinema as {his} main influence.",
            f"{he} lives with {his} family on a farm outside {self.names.town()}.",
            f"Early in {his} career {he.lower()} worked in radio and wrote for a local newspaper.",
            f"{he} also teaches a summer course for young {occupation}s every year.",
        ))
        return name, text, facts

    def studio(self) -> tuple[str, str, dict[str, str]]:
        """A film studio's entry: (title, text, facts with keys year, founder, city)."""
        rng = self.rng
        city = self.names.town()
        name = f"{self.names.town()} Pictures"
        facts = {"year": str(rng.randint(1910, 1995)), "founder": self.names.person()[0], "city": city}
        text = (f"{name} is a film production company founded in {facts['year']} by {facts['founder']} "
                f"and based in {city}.")
        text = self._tail(text, (
            f"It began as a distributor of newsreels and short documentaries for cinemas in {city}.",
            "The company moved into feature films after the war and expanded quickly.",
            f"Its studio lot covers {rng.randint(5, 40)} hectares and includes four sound stages.",
            "It has co-produced several international films with partners in Europe and Asia.",
            "A television division was added decades later and now produces crime series.",
            "The company was sold to a media group but kept its own name and logo.",
        ))
        return name, text, facts

    def film(self, director: str, studio: str, star: str) -> tuple[str, str]:
        """A film's entry linking its director, studio and star."""
        rng = self.rng
        title = self.names.title()
        text = (f"{title} is a {rng.randint(1950, 2015)} {rng.choice(GENRES)} film directed by {director} "
                f"and produced by {studio}. It stars {star} in the lead role.")
        text = self._tail(text, (
            f"The story follows a {rng.choice(JOBS)} who returns to {self.names.town()} after years away.",
            f"Filming took place over {rng.choice(NUMBERS)} weeks in the spring.",
            "It received mixed reviews but became a modest success at the box office.",
            "The score was recorded with a small string orchestra.",
            "A restored version was released on home video decades later.",
            "The film premiered at a regional festival, where it won the audience award.",
        ))
        return title, text


def _hotpotqa(rng: random.Random, turns: int | None) -> tuple[str, list[Turn]]:
    wiki = _Wiki(rng)
    if turns is None and rng.random() < 0.2:
        return _comparison(rng, wiki)
    director, director_text, d = wiki.person("film director")
    studio, studio_text, s = wiki.studio()
    star, star_text, a = wiki.person("actor")
    title, film_text = wiki.film(director, studio, star)
    bridges = [
        (f"In which town was the director of {title} born?", d["city"], director),
        (f"When was the director of {title} born?", d["date"], director),
        (f"What nationality is the director of {title}?", d["nationality"], director),
        (f"Who founded the company that produced {title}?", s["founder"], studio),
        (f"Where is the company that produced {title} based?", s["city"], studio),
        (f"When was the lead actor of {title} born?", a["date"], star),
    ]
    chosen = rng.sample(bridges, turns or 1)
    entries = {director: director_text, studio: studio_text, star: star_text}
    gold = [(title, film_text)] + [(name, entries[name]) for name in dict.fromkeys(b[2] for b in chosen)]
    return _with_distractors(rng, wiki, gold), [Turn(q, ans) for q, ans, _ in chosen]


def _comparison(rng: random.Random, wiki: _Wiki) -> tuple[str, list[Turn]]:
    """'Who was born first, X or Y?' over two people's entries (about 20% of HotpotQA)."""
    first, first_text, f = wiki.person("film director")
    second, second_text, g = wiki.person("film director")
    while g["year"] == f["year"]:
        second, second_text, g = wiki.person("film director")
    answer = first if int(f["year"]) < int(g["year"]) else second
    order = [first, second] if rng.random() < 0.5 else [second, first]
    context = _with_distractors(rng, wiki, [(first, first_text), (second, second_text)])
    return context, [Turn(f"Who was born first, {order[0]} or {order[1]}?", answer)]


def _with_distractors(rng: random.Random, wiki: _Wiki, gold: list[tuple[str, str]]) -> str:
    """The gold entries among distractor entries, 10 in all, shuffled."""
    paragraphs = list(gold)
    while len(paragraphs) < 10:
        kind = rng.random()
        if kind < 0.4:
            name, text, _ = wiki.person(rng.choice(("film director", "actor", "screenwriter")))
        elif kind < 0.6:
            name, text, _ = wiki.studio()
        else:
            name, text = wiki.film(wiki.names.person()[0], f"{wiki.names.town()} Pictures",
                                   wiki.names.person()[0])
        paragraphs.append((name, text))
    rng.shuffle(paragraphs)
    return paragraphs_context(paragraphs)
