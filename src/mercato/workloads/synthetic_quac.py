"""The QuAC look-alike: one section of an invented biography and long, clause-length answers.

A section is a run of dated events and remarks of about 388 tokens; an answer is a whole clause,
and a question about the fact right after the previous one may be QuAC's follow-up ("What
happened next?").
"""

from __future__ import annotations

import random

from mercato.workloads.dialogue import Turn
from mercato.workloads.synthetic_text import Fact, binomial, count_tokens
from mercato.workloads.vocabulary import (
    NUMBERS,
    ORGANISATIONS,
    REGIONS,
    RELATIONS,
    ROLES,
    NamePool,
)

STYLES = ("bold", "restrained", "playful", "severe", "lyrical", "old-fashioned")


def make_quac(rng: random.Random, turns: int | None) -> tuple[str, list[Turn]]:
    """A biography section and its turns: ``turns`` of them, or 4 + Binomial(8, 0.4) when None."""
    turns = turns if turns is not None else 4 + binomial(rng, 8, 0.4)
    names = NamePool(rng)
    name, female = names.person()
    surname = name.split()[-1]
    he, his = ("she", "her") if female else ("he", "his")
    year = rng.randint(1930, 1990)
    target = rng.randint(368, 408)  # mean 388: the last sentences overshoot by about 13 tokens
    facts: list[Fact] = []
    tokens = answers = 0

    def event() -> Fact:
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
        return Fact(sentence, [(about, clause), ("What happened next?", clause)])

    def remark() -> Fact:
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
        return Fact(f"{clause}.", [(question, clause)])

    while tokens < target or answers < turns:
        fact = event() if rng.random() < 0.7 else remark()
        facts.append(fact)
        tokens += count_tokens(fact.sentence)
        answers += 1
    section = rng.choice(("Career", "Early career", "Later years", "Touring years"))
    context = f"{name}: {section}\n\n" + " ".join(fact.sentence for fact in facts)
    return context, _quac_turns(rng, facts, turns)


def _quac_turns(rng: random.Random, facts: list[Fact], turns: int) -> list[Turn]:
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
