"""Concept extraction from free-text captions against the MTG-Jamendo vocabulary."""

import pytest

from evaluation.challenge.vocabulary import (
    extract_concepts,
    mtg_jamendo_vocabulary,
    normalise,
    parse_vocabulary,
)
from model.datasets.captions import humanise
from model.datasets.synthetic import GENRE_TAGS, INSTRUMENT_TAGS, MOOD_TAGS


def test_the_committed_vocabulary_is_the_official_tag_set():
    tags = mtg_jamendo_vocabulary().tags
    assert {c: len(v) for c, v in tags.items()} == {"genre": 95, "instrument": 41, "mood": 59}
    # every tag the synthetic dataset uses (Jamendo names) is in it
    assert set(GENRE_TAGS) <= set(tags["genre"]) and set(INSTRUMENT_TAGS) <= set(tags["instrument"])
    assert set(MOOD_TAGS) <= set(tags["mood"])


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("Hip-hop with a boom bap beat", {"genre": ("hiphop",), "instrument": ("beat",)}),
        ("hip hop, hiphop or HIP HOP", {"genre": ("hiphop",)}),
        ("Drum 'n' bass with rolling breaks", {"genre": ("drumnbass",)}),
        ("a drum and bass track", {"genre": ("drumnbass",)}),
        ("a blues riff on electric guitar", {"genre": ("blues",), "instrument": ("electricguitar",)}),
        ("R&B slow jam", {"genre": ("rnb",), "mood": ("slow",)}),
        ("rock 'n' roll from the 80s", {"genre": ("rocknroll", "80s")}),
        ("Synths and pads", {"instrument": ("synthesizer", "pad")}),
        ("an upright bass and a classical guitar", {"instrument": ("doublebass", "classicalguitar")}),
        ("music for video games", {"mood": ("game",)}),
        ("a dreamy, melancholy lo-fi tune", {"mood": ("dream", "melancholic")}),
    ],
)
def test_multi_word_forms_and_spellings(caption, expected):
    assert extract_concepts(caption) == expected


def test_negated_mentions_are_not_concepts():
    assert extract_concepts("Funky groove with horns, no vocals") == {
        "genre": ("funk", "groove"),
        "instrument": ("horn",),
    }
    assert extract_concepts("piano only, without drums or bass") == {"instrument": ("piano",)}
    assert extract_concepts("no drums, just a calm piano") == {"instrument": ("piano",), "mood": ("calm",)}


def test_every_caption_word_the_prepare_stage_writes_maps_back_to_its_tag():
    """``humanise(tag)`` (the words the built-in captions use) extracts the tag itself; the exceptions: the genre
    ``hard``, whose bare word is too ambiguous to be a spelling ("hard hitting"), and the mood ``ambiental``,
    which captions write "ambient" — the genre's word."""
    vocab = mtg_jamendo_vocabulary()
    misses = [
        (category, tag)
        for category, tags in vocab.tags.items()
        for tag in tags
        if tag not in extract_concepts(f"some {humanise(tag)} music").get(category, ())
    ]
    assert misses == [("genre", "hard"), ("mood", "ambiental")]


def test_words_inside_other_words_do_not_match():
    assert extract_concepts("a popular, rocking, classically trained pianist") == {"instrument": ("piano",)}
    assert extract_concepts("The sound of a quiet morning by the sea") == {}


def test_normalise_and_bad_vocabulary_lines():
    assert normalise("Drum 'n' Bass & R&B!") == ["drum", "and", "bass", "and", "r", "and", "b"]
    with pytest.raises(ValueError, match=r"vocab:2: expected category"):
        parse_vocabulary(["genre\trock\t", "colour\tred\t"], "vocab")
    only_listed = parse_vocabulary(["genre\thard\t-|hard dance"], "v")
    assert only_listed.extract("hard hitting drums") == {} and only_listed.extract("hard dance") == {
        "genre": ("hard",)
    }
