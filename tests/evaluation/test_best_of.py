"""Best-of-N: the documented rules pick the expected seed."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.best_of import choose_best_seeds


def test_fad_clap_rule_picks_the_best_mean_rank_with_documented_ties():
    prompts = ["a", "a", "a", "b", "b", "c", "c"]
    seeds = [0, 1, 2, 0, 1, 0, 1]
    fad = np.array([3.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0])
    clap = np.array([0.9, 0.1, 0.5, 0.2, 0.3, 0.3, 0.3])
    result = choose_best_seeds(prompts, seeds, fad, clap, "fad_clap")
    # a: ranks (fad, clap) = (3,1), (1,3), (2,2) -> all mean 2: tie -> lowest fad -> seed 1
    # b: (1,2), (2,1) -> tie -> lower fad -> seed 0; c: clap tie (1.5 each), fad decides -> seed 0
    assert result.best_seeds == {"a": 1, "b": 0, "c": 0}
    assert result.chosen.tolist() == [False, True, False, True, False, True, False]
    np.testing.assert_allclose(result.rank_clap[5:], [1.5, 1.5])


def test_single_criterion_rules_and_clear_winner():
    prompts = ["p"] * 3
    fad = np.array([0.5, 0.2, 0.9])
    clap = np.array([0.1, 0.2, 0.8])
    assert choose_best_seeds(prompts, [0, 1, 2], fad, clap, "fad").best_seeds == {"p": 1}
    assert choose_best_seeds(prompts, [0, 1, 2], fad, clap, "clap").best_seeds == {"p": 2}
    dominant = choose_best_seeds(prompts, [0, 1, 2], np.array([0.1, 0.2, 0.9]), clap[::-1], "fad_clap")
    assert dominant.best_seeds == {"p": 0} and dominant.mean_rank[0] == 1.0


def test_unknown_rule_names_the_param():
    with pytest.raises(ValueError, match="evaluate.best_seed_rule"):
        choose_best_seeds(["p"], [0], np.zeros(1), np.zeros(1), "median")
