"""CCS arithmetic, the derangement, and the CLAP zero-shot judge rule on constructed embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics.ccs import ClapJudge, ccs, ccs_report, concept_pairs, coverage, seeded_derangement


def test_ccs_is_the_mean_of_k_over_m():
    judged = [
        [("genre", "rock", True), ("instrument", "guitar", False), ("mood", "happy", True)],
        [
            ("genre", "jazz", True),
            ("instrument", "piano", True),
            ("instrument", "bass", True),
            ("mood", "sad", False),
        ],
        [],
    ]
    np.testing.assert_allclose(coverage(judged)[:2], [2 / 3, 3 / 4])
    assert np.isnan(coverage(judged)[2])
    assert ccs(judged) == pytest.approx((2 / 3 + 3 / 4) / 2)
    with pytest.raises(ValueError, match="no prompt"):
        ccs([[], []])


def test_concept_pairs_deduplicate_in_order():
    assert concept_pairs({"genre": ["rock", "rock"], "mood": ["sad"]}) == [("genre", "rock"), ("mood", "sad")]


@pytest.mark.parametrize("n", [2, 3, 5, 17, 100])
def test_derangement_has_no_fixed_point_and_is_seeded(n):
    for seed in range(20):
        perm = seeded_derangement(n, seed)
        assert sorted(perm.tolist()) == list(range(n))
        assert not np.any(perm == np.arange(n))
    np.testing.assert_array_equal(seeded_derangement(n, 7), seeded_derangement(n, 7))
    with pytest.raises(ValueError):
        seeded_derangement(1, 0)


class _FakeText:
    """Text embeddings on fixed axes: '<x> music' / 'music played on <x>' -> the axis of x."""

    axes = ["rock", "jazz", "ambient", "piano", "guitar", "drums", "happy", "sad"]

    def __call__(self, texts):
        out = np.zeros((len(texts), len(self.axes)))
        for i, text in enumerate(texts):
            for j, name in enumerate(self.axes):
                if name in text.split():
                    out[i, j] = 1.0
        return out


def _audio(*names, weights=None):
    vec = np.zeros(len(_FakeText.axes))
    for k, name in enumerate(names):
        vec[_FakeText.axes.index(name)] = 1.0 if weights is None else weights[k]
    return vec


def test_clap_judge_top_m_rule_per_category():
    vocab = {
        "genre": ["rock", "jazz", "ambient"],
        "instrument": ["piano", "guitar", "drums"],
        "mood": ["happy", "sad"],
    }
    judge = ClapJudge(_FakeText(), vocab, "fake")
    audio = np.stack([_audio("rock", "guitar", "drums", "sad", weights=[1.0, 0.9, 0.8, 0.5])])
    prompt = {"genre": ["rock"], "instrument": ["guitar", "drums"], "mood": ["happy"]}
    (judged,) = judge.judge(audio, [prompt])
    assert judged == [
        ("genre", "rock", True),
        ("instrument", "guitar", True),
        ("instrument", "drums", True),
        ("mood", "happy", False),
    ]
    (judged,) = judge.judge(audio, [{"instrument": ["piano", "guitar"]}])
    assert dict(((c, n), p) for c, n, p in judged) == {
        ("instrument", "piano"): False,
        ("instrument", "guitar"): True,
    }


def test_ccs_report_scores_the_same_audio_against_deranged_prompts():
    vocab = {"genre": ["rock", "jazz", "ambient"]}
    judge = ClapJudge(_FakeText(), vocab, "fake")
    prompts = [{"genre": ["rock"]}, {"genre": ["jazz"]}, {"genre": ["ambient"]}]
    audio = np.stack([_audio("rock"), _audio("rock"), _audio("jazz"), _audio("ambient")])
    prompt_index = np.array([0, 0, 1, 2])  # two seeds of prompt 0
    report = ccs_report(judge, audio, prompts, prompt_index, shuffle_seed=3)
    assert report.ccs == 1.0
    assert report.ccs_shuffled == 0.0  # a derangement of 3 distinct genres never matches
    assert not np.any(report.derangement == np.arange(3))
