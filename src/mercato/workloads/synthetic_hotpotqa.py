"""The HotpotQA look-alike: ten invented encyclopaedia entries and a multi-hop question.

Bridge questions go from a film to its director, studio or lead actor; when the turns are left
free, about 20% of dialogues ask a comparison instead ("Who was born first, X or Y?"). Two or more
gold entries sit among distractors, 10 paragraphs in all, as in HotpotQA's distractor setting.
"""

from __future__ import annotations

import random

from mercato.workloads.dialogue import Turn, paragraphs_context
from mercato.workloads.synthetic_text import count_words
from mercato.workloads.vocabulary import (
    GENRES,
    JOBS,
    MONTHS,
    NATIONALITIES,
    NUMBERS,
    NamePool,
)


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


def make_hotpotqa(rng: random.Random, turns: int | None) -> tuple[str, list[Turn]]:
    """Ten paragraphs and ``turns`` bridge questions (or, when None, one bridge or comparison)."""
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
