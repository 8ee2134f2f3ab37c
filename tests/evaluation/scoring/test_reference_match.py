"""The reference clip beside a prompt: same track wins, else best Jaccard tag overlap (ties by id), else none."""

from __future__ import annotations

import pytest

from evaluation.metrics.audio_sets import DatasetClip
from evaluation.scoring.reference_match import ReferenceMatch, concept_pairs, jaccard, match_reference

REFS = [
    DatasetClip(
        "track_3",
        "ref/3.wav",
        "c",
        {"genre": ("rock",), "instrument": ("guitar", "drums"), "mood": ("dark",)},
    ),
    DatasetClip(
        "track_1", "ref/1.wav", "c", {"genre": ("rock",), "instrument": ("guitar",), "mood": ("calm",)}
    ),
    DatasetClip(
        "track_2", "ref/2.wav", "c", {"genre": ("jazz",), "instrument": ("piano",), "mood": ("calm",)}
    ),
]
ROCK = {"genre": ("rock",), "instrument": ("guitar",), "mood": ("dark",)}


def test_same_track_wins_over_a_better_tag_overlap():
    match = match_reference("track_2", ROCK, REFS)  # track_2's tags share nothing with these concepts
    assert match == ReferenceMatch("track_2", "ref/2.wav", 1.0, True)


def test_otherwise_the_highest_jaccard_overlap():
    # prompt {genre:rock, instrument:guitar, mood:dark}: track_3 shares 3 of 4 pairs, track_1 2 of 4
    match = match_reference("prompt-a", ROCK, REFS)
    assert match == ReferenceMatch("track_3", "ref/3.wav", pytest.approx(0.75), False)
    assert jaccard(concept_pairs(ROCK), concept_pairs(REFS[1].tags)) == pytest.approx(2 / 4)


def test_ties_go_to_the_smallest_track_id_and_case_does_not_matter():
    # both clips have the tag set {genre:rock}: overlap 1/2 with each, so the smaller id wins
    tie = [
        DatasetClip("track_9", "9.wav", "", {"genre": ("rock",)}),
        DatasetClip("track_4", "4.wav", "", {"genre": ("rock",)}),
    ]
    assert match_reference("p", {"genre": ("Rock",), "mood": ("calm",)}, tie).track_id == "track_4"
    assert (
        match_reference("p", {"genre": ("Rock",)}, tie).overlap == 1.0
    )  # identical tag set, not the same track


def test_none_for_zero_overlap_or_an_untagged_reference():
    assert match_reference("p", {"genre": ("polka",)}, REFS) is None
    untagged = [DatasetClip("a", "a.wav", ""), DatasetClip("b", "b.wav", "")]  # evaluate.reference_dir files
    assert match_reference("p", ROCK, untagged) is None
    assert match_reference("p", {}, REFS) is None  # a prompt without concepts
    assert match_reference("b", ROCK, untagged) == ReferenceMatch(
        "b", "b.wav", 1.0, True
    )  # file named as the track
