"""The CoQA look-alike: a short story of about 271 words and short span answers, asked in order.

Facts about a small cast (purchases, outings, homes, relatives, pets...) are mixed with scene-setting
sentences that answer nothing, until the story is long enough and holds enough questions; the
turns are then drawn from the facts and asked in the order of the story, as CoQA's are.
"""

from __future__ import annotations

import random

from mercato.workloads.dialogue import Turn
from mercato.workloads.synthetic_text import Fact, binomial, count_words, pick_in_order
from mercato.workloads.vocabulary import (
    ADJECTIVES,
    ANIMALS,
    COLORS,
    DAYS,
    EMOTIONS,
    EVENTS,
    FEATURES,
    JOBS,
    NUMBERS,
    OBJECTS,
    OUTINGS,
    PARTS,
    PET_NAMES,
    PLACES,
    RELATIONS,
    TIMES,
    NamePool,
)

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

    def fact(self) -> Fact | None:
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

    def _purchase(self, p: str, _: bool) -> Fact:
        rng = self.rng
        verb, past = rng.choice((("buy", "bought"), ("find", "found"), ("sell", "sold"), ("fix", "fixed")))
        thing = f"the {rng.choice(ADJECTIVES)} {rng.choice(OBJECTS)}"
        place = f"the {rng.choice(PLACES)}"
        return Fact(f"{p} {past} {thing} at {place}.",
                     [(f"What did {p} {verb}?", thing), (f"Where did {p} {verb} it?", f"at {place}")])

    def _outing(self, p: str, _: bool) -> Fact:
        rng = self.rng
        q, day, time, spot = self._other(p), rng.choice(DAYS), rng.choice(TIMES), rng.choice(OUTINGS)
        return Fact(f"{p} and {q} went to the {spot} together on {day} {time}.",
                     [(f"When did {p} go to the {spot}?", f"on {day} {time}"),
                      (f"Who went to the {spot} with {p}?", q)])

    def _home(self, p: str, female: bool) -> Fact:
        rng = self.rng
        age, relation = rng.choice(NUMBERS[4:]), rng.choice(RELATIONS)
        poss = "her" if female else "his"
        return Fact(f"{p} was {age} years old and lived in {self.town} with {poss} {relation}.",
                     [(f"How old was {p}?", age), (f"Where did {p} live?", f"in {self.town}"),
                      (f"Who did {p} live with?", f"{poss} {relation}")])

    def _relative(self, p: str, _: bool) -> Fact:
        rng = self.rng
        relation, job, spot = rng.choice(RELATIONS), rng.choice(JOBS), rng.choice(PLACES)
        return Fact(f"{p}'s {relation} worked as a {job} near the {spot}.",
                     [(f"What did {p}'s {relation} do for a living?", f"worked as a {job}"),
                      (f"Where did {p}'s {relation} work?", f"near the {spot}")])

    def _thing(self, p: str, female: bool) -> Fact:
        rng = self.rng
        thing, count, parts = rng.choice(OBJECTS), rng.choice(NUMBERS), rng.choice(PARTS)
        color, feature = rng.choice(COLORS), rng.choice(FEATURES)
        poss = "her" if female else "his"
        return Fact(f"{p} kept {poss} {thing} in a box that had {count} {parts} and a {color} {feature}.",
                     [(f"How many {parts} did {p}'s box have?", count),
                      (f"What else did {p}'s box have besides the {parts}?", f"a {color} {feature}")])

    def _feeling(self, p: str, female: bool) -> Fact:
        rng = self.rng
        q, emotion = self._other(p), rng.choice(EMOTIONS)
        event = rng.choice(EVENTS).replace("her birthday", f"{'her' if female else 'his'} birthday")
        return Fact(f"{p} felt {emotion} because {q} had {event}.",
                     [(f"How did {p} feel?", emotion),
                      (f"Why did {p} feel {emotion}?", f"because {q} had {event}")])

    def _pet(self, p: str, _: bool) -> Fact:
        rng = self.rng
        animal, pet = rng.choice(ANIMALS), rng.choice(PET_NAMES)
        return Fact(f"{p} had a {animal} called {pet}.",
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


def make_coqa(rng: random.Random, turns: int | None) -> tuple[str, list[Turn]]:
    """A story and its turns: ``turns`` of them, or 10 + Binomial(13, 0.4) when None."""
    turns = turns if turns is not None else 10 + binomial(rng, 13, 0.4)
    story = _Story(rng)
    target = rng.randint(226, 306)  # mean 266: the last sentence overshoots by about 5 words
    facts: list[Fact] = []
    questions: set[str] = set()
    words = 0
    while words < target or len(questions) < turns:
        if story.exhausted and len(questions) < turns:
            raise ValueError(f"a CoQA-like story holds at most {len(questions)} questions, asked for {turns}")
        wants_fact = not story.exhausted and (len(questions) < turns or rng.random() < 0.5)
        fact = story.fact() if wants_fact else Fact(story.filler(), [])
        if fact is None:
            continue
        facts.append(fact)
        words += count_words(fact.sentence)
        questions.update(question for question, _ in fact.qas)
    context = " ".join(fact.sentence for fact in facts)
    return context, pick_in_order(rng, facts, turns)
