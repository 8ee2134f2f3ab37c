"""Best-of-N: continuous standardised scores pick the better seed, deterministically, on every rule."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.scoring.best_of import (
    choose_best_seeds,
    clip_scores,
    compare_with_first_seed,
    pick_per_prompt,
)


def two_seed_fixture(n_prompts=40, seed=0):
    """Seed 1 is clearly better on text–audio and only marginally worse on distance, for every prompt."""
    rng = np.random.default_rng(seed)
    prompts = [f"p{i}" for i in range(n_prompts) for _ in range(2)]
    seeds = [0, 1] * n_prompts
    base_fad = rng.uniform(5.0, 50.0, n_prompts)
    fad = np.stack([base_fad, base_fad * 1.02], 1).ravel()
    base_clap = rng.uniform(0.0, 0.3, n_prompts)
    clap = np.stack([base_clap, base_clap + 0.2], 1).ravel()
    return prompts, seeds, fad, clap


def test_fad_clap_lets_clap_decide_when_two_seeds_split_the_criteria():
    # with mean ranks each prompt ties 1.5–1.5 and the distance decided alone (seed 0): CLAP never counted
    prompts, seeds, fad, clap = two_seed_fixture()
    result = choose_best_seeds(prompts, seeds, fad, clap, "fad_clap")
    assert set(result.best_seeds.values()) == {1}
    assert choose_best_seeds(prompts, seeds, fad, clap, "fad").best_seeds == dict.fromkeys(
        result.best_seeds, 0
    )
    assert choose_best_seeds(prompts, seeds, fad, clap, "clap").best_seeds == result.best_seeds


def test_clearly_better_seed_is_picked_among_several():
    rng = np.random.default_rng(1)
    prompts = [f"p{i}" for i in range(30) for _ in range(4)]
    seeds = [0, 1, 2, 3] * 30
    fad = rng.uniform(10, 20, 120)
    clap = rng.uniform(0.0, 0.2, 120)
    fad[2::4] *= 0.3  # seed 2: much closer to the reference and a much better text match
    clap[2::4] += 0.4
    for rule in ("fad_clap", "fad", "clap"):
        assert set(choose_best_seeds(prompts, seeds, fad, clap, rule).best_seeds.values()) == {2}, rule


def test_scores_are_comparable_across_scales():
    prompts, seeds, fad, clap = two_seed_fixture()
    a = choose_best_seeds(prompts, seeds, fad, clap)
    b = choose_best_seeds(prompts, seeds, fad * 1000.0, clap * 10.0 - 3.0)
    assert a.best_seeds == b.best_seeds
    np.testing.assert_allclose(a.score, b.score)
    assert abs(a.z_fad.mean()) < 1e-9 and abs(a.z_clap.std() - 1.0) < 1e-9


def test_exact_ties_go_to_the_lower_seed_whatever_the_row_order():
    prompts = ["a", "a", "a", "b", "b"]
    seeds = [2, 0, 1, 1, 0]
    chosen, best = pick_per_prompt(prompts, seeds, np.array([1.0, 1.0, 0.5, 3.0, 3.0]))
    assert best == {"a": 0, "b": 0} and chosen.tolist() == [False, True, False, False, True]


def test_constant_inputs_fall_back_to_the_first_seed():
    result = choose_best_seeds(["p", "p"], [1, 0], np.ones(2), np.zeros(2))
    assert result.best_seeds == {"p": 0} and np.all(result.score == 0)


def test_descriptive_ranks_still_reported():
    result = choose_best_seeds(
        ["p", "p", "p"], [0, 1, 2], np.array([3.0, 1.0, 2.0]), np.array([0.9, 0.1, 0.5])
    )
    assert result.rank_fad.tolist() == [3.0, 1.0, 2.0] and result.rank_clap.tolist() == [1.0, 3.0, 2.0]
    assert result.mean_rank.tolist() == [2.0, 2.0, 2.0]


def test_compare_with_first_seed_on_held_out_values():
    prompts, seeds, fad, clap = two_seed_fixture(n_prompts=10)
    chosen = choose_best_seeds(prompts, seeds, fad, clap, "clap").chosen
    held_out = np.tile([0.4, 0.6], 10)  # a judge that prefers seed 1 everywhere
    cmp = compare_with_first_seed(prompts, seeds, chosen, held_out)
    assert (cmp.better, cmp.worse, cmp.same) == (10, 0, 0)
    assert cmp.gain == pytest.approx(0.2) and cmp.oracle_mean == pytest.approx(0.6)
    lower = compare_with_first_seed(prompts, seeds, chosen, held_out, higher_is_better=False)
    assert (lower.better, lower.worse) == (0, 10) and lower.oracle_mean == pytest.approx(0.4)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="evaluate.best_seed_rule"):
        clip_scores(np.ones(1), np.zeros(1), "median")
    with pytest.raises(ValueError, match="one entry per clip"):
        choose_best_seeds(["p"], [0, 1], np.ones(2), np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        pick_per_prompt(["p"], [0], np.array([np.nan]))


def test_held_out_study_judges_each_rule_on_what_it_did_not_use(capsys, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from evaluation.scoring.best_of import held_out_study
    from pipelines.best_of_study import main

    prompts, seeds, fad, clap = two_seed_fixture(n_prompts=8)
    ccs = np.tile([0.2, 0.7], 8)  # the held-out judge agrees with text-audio: seed 1 is better
    table = pa.table(
        {"prompt_id": prompts, "seed": seeds, "fad_distance": fad, "text_audio": clap, "ccs": ccs}
    )
    rows = {(r["rule"], r["judged_on"]): r for r in held_out_study(table)}
    assert set(rows) == {
        ("fad", "text_audio"),
        ("fad", "ccs"),
        ("clap", "fad_distance"),
        ("clap", "ccs"),
        ("fad_clap", "ccs"),
    }
    assert (
        rows[("fad_clap", "ccs")]["gain"] == pytest.approx(0.5) and rows[("fad_clap", "ccs")]["better"] == 8
    )
    assert rows[("fad", "ccs")]["gain"] == 0.0 and rows[("fad", "ccs")]["same"] == 8  # fad keeps seed 0
    assert rows[("clap", "fad_distance")]["gain"] > 0 and rows[("clap", "fad_distance")]["worse"] == 8
    pq.write_table(table, tmp_path / "per_prompt.parquet")
    main([str(tmp_path / "per_prompt.parquet")])
    assert "| fad_clap | ccs |" in capsys.readouterr().out
