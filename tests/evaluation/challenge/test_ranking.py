"""Borda ranking of experiments over FAD (lower is better), CLAP and CCS (higher is better)."""

import math

import pytest

from evaluation.challenge.ranking import Experiment, borda_ranking, format_table, metric_points

# four rankable experiments with ties and a missing CLAP, and one without any metric
TABLE = [
    Experiment("A", "a" * 40, {"fad": 2.0, "clap": 0.30, "ccs": 0.80}),
    Experiment("B", "b" * 40, {"fad": 1.0, "clap": 0.30, "ccs": 0.60}),
    Experiment("C", "c" * 40, {"fad": 3.0, "clap": 0.25, "ccs": 0.80}),
    Experiment("D", "d" * 40, {"fad": 1.0, "ccs": 0.70}),
    Experiment("E", "e" * 40, {}),
]


def test_hand_computed_borda_count():
    """n = 4 ranked: the k-th best gets 3 - k; ties share their positions' points; missing ranks last.

    FAD:  B = D = 1.0 share 3 and 2 -> 2.5 each; A 2.0 -> 1; C 3.0 -> 0
    CLAP: A = B = 0.30 -> 2.5 each; C 0.25 -> 1; D missing -> 0
    CCS:  A = C = 0.80 -> 2.5 each; D 0.70 -> 1; B 0.60 -> 0
    Borda: A 6, B 5, C 3.5, D 3.5 -> ranks 1, 2, 3, 3; E has no metric: unranked.
    """
    ranking = borda_ranking(TABLE)
    got = {r.experiment.name: (r.rank, r.borda, r.points) for r in ranking.ranked}
    assert got == {
        "A": (1, 6.0, {"fad": 1.0, "clap": 2.5, "ccs": 2.5}),
        "B": (2, 5.0, {"fad": 2.5, "clap": 2.5, "ccs": 0.0}),
        "C": (3, 3.5, {"fad": 0.0, "clap": 1.0, "ccs": 2.5}),
        "D": (3, 3.5, {"fad": 2.5, "clap": 0.0, "ccs": 1.0}),
    }
    assert [r.experiment.name for r in ranking.ranked] == ["A", "B", "C", "D"]
    assert list(ranking.unranked) == ["E"]
    data = ranking.to_json()
    assert data["experiments"][3] == {
        "rank": 3,
        "name": "D",
        "rev": "d" * 40,
        "borda": 3.5,
        "points": {"fad": 2.5, "clap": 0.0, "ccs": 1.0},
        "values": {"fad": 1.0, "clap": None, "ccs": 0.7},
    }
    assert data["metrics"] == {"fad": "lower", "clap": "higher", "ccs": "higher"}


def test_missing_values_tie_for_last_and_non_finite_counts_as_missing():
    assert metric_points([1.0, None, None, 2.0], "lower") == [3.0, 0.5, 0.5, 2.0]
    assert metric_points([0.1, 0.3, 0.2], "higher") == [0.0, 2.0, 1.0]
    ranking = borda_ranking(
        [Experiment("x", "", {"fad": math.nan, "clap": 0.1}), Experiment("y", "", {"fad": 5.0})]
    )
    assert {r.experiment.name: r.points["fad"] for r in ranking.ranked} == {"x": 0.0, "y": 1.0}
    assert borda_ranking([]).ranked == []


@pytest.mark.parametrize("width", [100, 80])
def test_table_fits_the_width_and_shows_every_experiment(width):
    long = Experiment(
        "an-experiment-with-a-rather-long-name-" + "x" * 40,
        "f" * 40,
        {"fad": 1234.5, "clap": -0.5, "ccs": 1.0},
    )
    text = format_table(borda_ranking([*TABLE, long]), width=width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert lines[0].split()[:3] == ["rank", "experiment", "rev"] and "Borda" in lines[0]
    assert any(line.split()[:2] == ["1", "A"] for line in lines)
    assert "not ranked" in lines[-1] and " E " in lines[-1]
    assert "1234.5000" in text and "~" in text  # long names are cut, numbers are not
