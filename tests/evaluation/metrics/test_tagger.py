"""The offline concept tagger learns a separable toy problem and round-trips through save/load."""

from __future__ import annotations

import numpy as np

from evaluation.metrics.ccs import TaggerJudge, ccs_report
from evaluation.metrics.tagger import ConceptTagger, ConceptVocabulary, TaggerConfig, train_tagger

GENRES, INSTRUMENTS = ["rock", "jazz", "ambient"], ["piano", "guitar", "drums"]


def _toy(n, seed):
    """Features: 3 genre dims (one-hot + noise), 3 instrument bits, 4 noise dims."""
    rng = np.random.default_rng(seed)
    tags, x = [], np.zeros((n, 10))
    for i in range(n):
        g = rng.integers(3)
        inst = [j for j in range(3) if rng.random() < 0.5] or [int(rng.integers(3))]
        x[i, g] = 2.0
        x[i, [3 + j for j in inst]] = 2.0
        tags.append({"genre": [GENRES[g]], "instrument": [INSTRUMENTS[j] for j in inst]})
    return x + 0.3 * rng.standard_normal(x.shape), tags


def test_vocabulary_detects_exclusive_categories():
    _, tags = _toy(50, 0)
    vocab = ConceptVocabulary.from_tags(tags)
    assert vocab.exclusive == frozenset({"genre"})
    assert vocab.index("genre", "jazz") is not None and vocab.index("mood", "happy") is None
    assert vocab.index("concept", "piano") == vocab.index("instrument", "piano")  # uncategorised match


def test_tagger_learns_separable_toy_problem_and_round_trips(tmp_path):
    train_x, train_tags = _toy(200, 1)
    val_x, val_tags = _toy(60, 2)
    tagger = train_tagger(train_x, train_tags, val_x, val_tags, TaggerConfig(steps=120, seed=0))
    assert tagger.info["validation_accuracy"] > 0.95
    test_x, test_tags = _toy(60, 3)
    truth = tagger.vocab.targets(test_tags).astype(bool)
    pred = tagger.present(test_x)
    assert (pred == truth).mean() > 0.95
    genre_cols = [i for i, (c, _) in enumerate(tagger.vocab.keys) if c == "genre"]
    assert np.all(pred[:, genre_cols].sum(axis=1) == 1)  # exclusive: exactly one genre

    report = ccs_report(TaggerJudge(tagger), test_x, test_tags, np.arange(len(test_tags)), shuffle_seed=0)
    assert report.ccs > 0.9 and report.margin > 0.3

    tagger.save(tmp_path / "tagger.pt")
    again = ConceptTagger.load(tmp_path / "tagger.pt")
    np.testing.assert_array_equal(again.present(test_x), pred)
    again_trained = train_tagger(train_x, train_tags, val_x, val_tags, TaggerConfig(steps=120, seed=0))
    np.testing.assert_allclose(again_trained.probabilities(test_x), tagger.probabilities(test_x), rtol=1e-6)


def test_unknown_prompt_concepts_are_judged_absent():
    train_x, train_tags = _toy(80, 4)
    tagger = train_tagger(train_x, train_tags, train_x[:20], train_tags[:20], TaggerConfig(steps=50))
    judge = TaggerJudge(tagger)
    (judged,) = judge.judge(train_x[:1], [{"genre": ["polka"]}])
    assert judged == [("genre", "polka", False)]
    assert ("genre", "polka") in judge.unknown_concepts
