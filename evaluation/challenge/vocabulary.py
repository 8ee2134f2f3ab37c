"""Concepts of a free-text caption: the MTG-Jamendo genre / instrument / mood tags it names.

The challenge's prompts come as ``id,prompt`` with no concept lists, while CCS needs each prompt's concepts. This
module finds them in the caption against the MTG-Jamendo vocabulary (``mtg_jamendo_vocabulary.tsv`` beside this
file: the 95 genre, 41 instrument and 59 mood/theme tags of the autotagging set, with the everyday spellings of
each). Matching is lexical and deterministic:

- the caption is normalised (lower case, ``&`` -> ``and``, a lone ``n`` -> ``and``, punctuation -> spaces) and
  split into words;
- at each word the longest spelling that starts there wins ("drum and bass" is the genre, not the instrument
  bass; "electric guitar" is one instrument, not guitar), and its words are consumed;
- a negated mention is not a concept: after ``no``/``without``/``not``/``non``/``nor``/``never``, the following
  concept words (and the list words between them: ``or``, ``and``, ``any``, ``a``...) are skipped, so
  "no vocals" and "without drums or bass" name nothing.

``VOCABULARY.extract("A relaxing hip-hop beat with soft piano")`` ->
``{"genre": ("hiphop",), "instrument": ("beat", "piano"), "mood": ("relaxing", "soft")}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

VOCABULARY_FILE = Path(__file__).with_name("mtg_jamendo_vocabulary.tsv")
CATEGORIES = ("genre", "instrument", "mood")
NEGATORS = frozenset({"no", "without", "not", "non", "nor", "never", "minus", "sans"})
LIST_WORDS = frozenset({"or", "and", "any", "a", "an", "the", "nor", "other", "of", "more"})
_WORD = re.compile(r"[a-z0-9]+")


def normalise(text: str) -> list[str]:
    """The words of ``text`` as matching sees them: ``"Drum 'n' Bass & R&B"`` -> drum and bass and r and b."""
    text = text.lower().replace("&", " and ")
    return ["and" if w == "n" else w for w in _WORD.findall(text)]


@dataclass(frozen=True)
class Vocabulary:
    """Spellings (word tuples) -> the (category, tag) pairs they name; ``tags`` per category in file order."""

    spellings: dict[tuple[str, ...], tuple[tuple[str, str], ...]]
    tags: dict[str, tuple[str, ...]]

    @property
    def longest(self) -> int:
        return max(len(s) for s in self.spellings)

    def extract(self, caption: str) -> dict[str, tuple[str, ...]]:
        """The concepts ``caption`` names, per category in order of mention (no duplicates); empty if none."""
        words = normalise(caption)
        found: dict[str, list[str]] = {}
        negated = False
        i = 0
        while i < len(words):
            match = self._match_at(words, i)
            if match is None:
                word = words[i]
                negated = word in NEGATORS or (negated and word in LIST_WORDS)
                i += 1
                continue
            length, pairs = match
            if not negated:
                for category, tag in pairs:
                    if tag not in found.setdefault(category, []):
                        found[category].append(tag)
            i += length
        return {c: tuple(found[c]) for c in CATEGORIES if found.get(c)}

    def _match_at(self, words: list[str], i: int) -> tuple[int, tuple[tuple[str, str], ...]] | None:
        for length in range(min(self.longest, len(words) - i), 0, -1):
            pairs = self.spellings.get(tuple(words[i : i + length]))
            if pairs:
                return length, pairs
        return None


def parse_vocabulary(lines: Iterable[str], source: str) -> Vocabulary:
    """Build a :class:`Vocabulary` from lines ``category<TAB>tag<TAB>spelling|spelling`` (``#`` comments)."""
    spellings: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    tags: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for n, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) != 3 or fields[0] not in CATEGORIES or not fields[1]:
            raise ValueError(f"{source}:{n}: expected category<TAB>tag<TAB>spellings, got {line!r}")
        category, tag, listed = fields
        forms = [s for s in listed.split("|") if s]
        if forms[:1] == ["-"]:
            forms = forms[1:]  # the bare tag name is too ambiguous to be a spelling
        else:
            forms.insert(0, tag)
        if category == "instrument":
            forms += [f + "s" for f in forms if not f.endswith("s")]
        tags[category].append(tag)
        for form in forms:
            key = tuple(normalise(form))
            if key and (category, tag) not in spellings.setdefault(key, []):
                spellings[key].append((category, tag))
    return Vocabulary({k: tuple(v) for k, v in spellings.items()}, {c: tuple(v) for c, v in tags.items()})


@cache
def mtg_jamendo_vocabulary() -> Vocabulary:
    """The committed MTG-Jamendo vocabulary (read once)."""
    return parse_vocabulary(VOCABULARY_FILE.read_text(encoding="utf-8").splitlines(), str(VOCABULARY_FILE))


def extract_concepts(caption: str) -> dict[str, tuple[str, ...]]:
    """The MTG-Jamendo concepts ``caption`` names (see the module docstring)."""
    return mtg_jamendo_vocabulary().extract(caption)
