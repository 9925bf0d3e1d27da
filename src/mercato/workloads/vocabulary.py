"""Word lists the synthetic workloads draw from, and a pool that hands out distinct names.

Invented names (first name + surname, syllable-built towns, adjective + noun titles) keep the
synthetic passages free of real people and places while reading like the datasets' prose.
"""

from __future__ import annotations

import random
from collections.abc import Callable

FEMALE = ("Anna", "Clara", "Elena", "Greta", "Hannah", "Iris", "Julia", "Lena", "Maya", "Nora",
          "Olivia", "Rosa", "Sofia", "Tessa", "Vera", "Zoe", "Alice", "Beatrice", "Dora", "Ella")
MALE = ("Adam", "Bruno", "Carl", "David", "Emil", "Felix", "Hugo", "Isaac", "Jonas", "Leo",
        "Marco", "Nils", "Oscar", "Paul", "Ruben", "Simon", "Tomas", "Victor", "Walter", "Yusuf")
SURNAMES = ("Abbott", "Berg", "Castell", "Dorsey", "Ellis", "Farrow", "Garnier", "Hale", "Ivers",
            "Jansen", "Keller", "Lund", "Moreau", "Novak", "Orr", "Pike", "Quinn", "Rask", "Sato",
            "Thorne", "Ulrich", "Vance", "Wren", "Yates", "Zeller", "Brandt", "Costa", "Dahl",
            "Eriksen", "Fontaine", "Gallo", "Hirsch", "Ibarra", "Kowal", "Lindqvist", "Marsh")
TOWN_HEADS = ("Ash", "Bel", "Cran", "Dun", "Elm", "Fair", "Glen", "Hol", "Kings", "Lin", "Mar",
              "North", "Oak", "Pem", "Red", "Stan", "Thorn", "West", "Wil", "York")
TOWN_TAILS = ("bury", "field", "ford", "ham", "ley", "mouth", "stead", "ton", "wick", "worth",
              "brook", "dale")
ADJECTIVES = ("old", "green", "small", "quiet", "red", "broken", "famous", "empty", "warm", "tall",
              "silver", "wooden", "narrow", "bright", "heavy", "yellow", "strange", "tiny")
COLORS = ("blue", "green", "red", "yellow", "white", "black", "orange", "purple", "brown", "grey")
OBJECTS = ("lantern", "kite", "bicycle", "clock", "violin", "basket", "map", "camera", "hat",
           "notebook", "umbrella", "compass", "teapot", "radio", "scarf", "telescope")
PARTS = ("wheels", "buttons", "pockets", "handles", "strings", "windows", "drawers", "bells")
FEATURES = ("handle", "lid", "ribbon", "stripe", "strap", "frame", "cover", "label")
PLACES = ("harbour market", "train station", "bakery", "library", "flower shop", "old mill",
          "town square", "county fair", "bookshop", "post office", "boat yard", "museum")
OUTINGS = ("lake", "beach", "zoo", "river bank", "castle ruins", "football match", "park", "forest")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TIMES = ("morning", "afternoon", "evening")
RELATIONS = ("brother", "sister", "cousin", "uncle", "aunt", "grandmother", "grandfather", "neighbour")
JOBS = ("baker", "nurse", "carpenter", "teacher", "fisherman", "painter", "doctor", "mechanic",
        "gardener", "librarian", "pilot", "tailor")
ANIMALS = ("dog", "cat", "parrot", "rabbit", "horse", "goat", "tortoise", "hamster")
PET_NAMES = ("Biscuit", "Pepper", "Captain", "Mabel", "Rufus", "Clover", "Ziggy", "Button", "Noodle")
EMOTIONS = ("happy", "nervous", "angry", "proud", "worried", "excited", "sad", "surprised")
EVENTS = ("lost the key to the shed", "forgotten her birthday", "won the spelling contest",
          "broken the kitchen window", "found a stray puppy", "missed the last bus home",
          "painted the fence green", "climbed the old oak tree")
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve")
NATIONALITIES = ("American", "British", "Canadian", "Irish", "Australian", "French", "German",
                 "Swedish", "Danish", "Norwegian", "Dutch", "Italian", "Spanish", "Austrian")
GENRES = ("drama", "comedy", "thriller", "western", "musical", "science fiction", "horror", "romance")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
TITLE_NOUNS = ("Harbour", "Winter", "Garden", "Letter", "Mirror", "Island", "Road", "Lighthouse",
               "Orchard", "Signal", "Bridge", "Valley", "Crown", "Tide", "Station", "Forest")
TITLE_ADJECTIVES = ("Silent", "Last", "Hidden", "Broken", "Golden", "Distant", "Burning", "Lost",
                    "Northern", "Quiet", "Paper", "Iron", "Velvet", "Endless", "Secret", "Crimson")
ORGANISATIONS = ("Royal Ballet", "National Orchestra", "City Theatre", "Folk Ensemble", "State Opera",
                 "Chamber Choir", "Touring Company", "Jazz Collective")
ROLES = ("dancer", "violinist", "stage manager", "lead singer", "pianist", "choreographer", "director")
REGIONS = ("Scandinavia", "South America", "the Balkans", "East Asia", "North Africa", "the Baltic states",
           "Central Europe", "the Pacific coast")


class NamePool:
    """Distinct names for one generated text: no person, town or title is handed out twice."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def _fresh(self, make: Callable[[], str]) -> str:
        for _ in range(1000):
            name = make()
            if name not in self.used:
                self.used.add(name)
                return name
        raise RuntimeError("the name pool is exhausted")

    def person(self, female: bool | None = None) -> tuple[str, bool]:
        """A full name and whether the person is female (drawn when ``female`` is None)."""
        is_female = self.rng.random() < 0.5 if female is None else female
        firsts = FEMALE if is_female else MALE
        return self._fresh(lambda: f"{self.rng.choice(firsts)} {self.rng.choice(SURNAMES)}"), is_female

    def first_name(self, female: bool) -> str:
        """A first name not used yet in this text."""
        return self._fresh(lambda: self.rng.choice(FEMALE if female else MALE))

    def town(self) -> str:
        """A town name built from two syllables."""
        return self._fresh(lambda: self.rng.choice(TOWN_HEADS) + self.rng.choice(TOWN_TAILS))

    def title(self) -> str:
        """A work's title such as 'The Silent Harbour'."""
        return self._fresh(lambda: f"The {self.rng.choice(TITLE_ADJECTIVES)} {self.rng.choice(TITLE_NOUNS)}")
