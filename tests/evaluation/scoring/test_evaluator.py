"""The metrics assembly: metrics.json holds numbers only, the headline is the chosen set; metric provenance labels;
the reference clip per prompt."""

from __future__ import annotations

import logging

from evaluation.challenge.prompts import Prompt
from evaluation.metrics.audio_sets import DatasetClip
from evaluation.scoring.evaluator import reference_matches
from evaluation.scoring.reference_match import ReferenceMatch
from evaluation.scoring.results import SetScores, assemble_metrics, metric_sources


def _set(fad, n):
    return SetScores(fad=fad, n_clips=n, n_windows=n, clap=0.1, ccs=0.5, ccs_shuffled=0.25)


def test_headline_is_the_chosen_set_and_counts_go_to_details():
    sets = {
        "chosen": _set(1.0, 4),
        "first_seed": _set(2.0, 4),
        "all_seeds": _set(3.0, 8),
        "ceiling": SetScores(fad=0.5, n_clips=4, n_windows=4, cache_hit=True),
    }
    metrics, counts = assemble_metrics(sets)
    assert metrics == {
        "fad": 1.0,
        "clap": 0.1,
        "ccs": 0.5,
        "ccs_margin": 0.25,
        "first_seed": {"fad": 2.0, "clap": 0.1, "ccs": 0.5, "ccs_margin": 0.25},
        "all_seeds": {"fad": 3.0, "clap": 0.1, "ccs": 0.5, "ccs_margin": 0.25},
        "ceiling": {"fad": 0.5},
    }
    assert counts["all_seeds"] == {"ccs_shuffled": 0.25, "n_clips": 8, "n_windows": 8}
    assert "cache_hit" not in counts["ceiling"]  # a run fact (the run record), not a detail of the output
    assert "ceiling" not in assemble_metrics({k: v for k, v in sets.items() if k != "ceiling"})[0]


def test_metric_sources_say_which_numbers_are_the_challenges():
    offline = metric_sources("spectral", "local", "tagger", "ref")
    assert not any(s["challenge_metric"] for s in offline.values())
    assert all(s["what"].startswith("offline stand-in") for s in offline.values())
    real = metric_sources("clap", "clap", "clap", "ref")
    assert real["fad"]["challenge_metric"] and real["clap"]["challenge_metric"]
    assert not real["ccs"]["challenge_metric"]  # CLAP zero-shot is not the challenge's judge
    assert metric_sources("clap", "clap", "alm", "ref")["ccs"]["challenge_metric"]


def test_reference_matches_per_prompt_and_a_logged_none(caplog):
    prompts = [
        Prompt("track_1", "c", {"genre": ("rock",)}),
        Prompt("p2", "c", {"genre": ("rock",), "mood": ("calm",)}),
        Prompt("p3", "c", {"genre": ("polka",)}),
    ]
    refs = [
        DatasetClip("track_1", "1.wav", "c", {"genre": ("rock",), "mood": ("calm",)}),
        DatasetClip("track_2", "2.wav", "c", {"genre": ("jazz",)}),
    ]
    with caplog.at_level(logging.INFO, logger="evaluation.scoring.evaluator"):
        matches = reference_matches(prompts, refs)
    assert matches["track_1"].same_track and matches["p2"] == ReferenceMatch("track_1", "1.wav", 1.0, False)
    assert matches["p3"] is None
    assert "1 same track, 1 by tag overlap, 1 none (e.g. p3: no reference clip shares a tag)" in caplog.text
