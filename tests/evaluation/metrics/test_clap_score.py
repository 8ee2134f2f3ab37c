"""local-clap: the contrastive projection learns paired toy data; mean pooling respects the mask."""

from __future__ import annotations

import numpy as np
import torch

from evaluation.metrics.clap_score import (
    LOCAL_CLAP_NAME,
    LocalClap,
    LocalClapConfig,
    pooled_text_features,
    text_audio_scores,
    train_local_clap,
)


def _paired(n, seed, classes=5):
    rng = np.random.default_rng(seed)
    audio_centres = np.random.default_rng(100).standard_normal((classes, 12))
    text_centres = np.random.default_rng(200).standard_normal((classes, 20))
    labels = rng.integers(classes, size=n)
    audio = audio_centres[labels] + 0.3 * rng.standard_normal((n, 12))
    text = text_centres[labels] + 0.3 * rng.standard_normal((n, 20))
    return audio, text, [str(k) for k in labels]


class _TableEncoder:
    """Stands in for MiniLM: a caption 'class k' maps to fixed token embeddings (with padding)."""

    def __init__(self, table):
        self.table = table

    def encode(self, texts):
        emb = torch.zeros(len(texts), 3, self.table.shape[1])
        mask = torch.zeros(len(texts), 3, dtype=torch.bool)
        for i, text in enumerate(texts):
            k = int(text.split()[-1])
            emb[i, :2] = torch.from_numpy(self.table[k]).float()
            mask[i, :2] = True
            emb[i, 2] = 1e6  # padding garbage that pooling must ignore
        return emb, mask


def test_pooling_ignores_padding():
    table = np.arange(6, dtype=float).reshape(2, 3)
    pooled = pooled_text_features(_TableEncoder(table), ["class 0", "class 1"])
    np.testing.assert_allclose(pooled, table)


def test_local_clap_separates_matched_from_mismatched_pairs(tmp_path):
    audio, text, keys = _paired(200, 0)
    model = train_local_clap(audio, text, keys, LocalClapConfig(steps=150, seed=0))
    assert model.name == LOCAL_CLAP_NAME
    test_audio, test_text, test_keys = _paired(60, 1)
    a, t = model.audio_vectors(test_audio), model.project_text(test_text)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-9)
    sims = a @ t.T
    same = np.array(test_keys)[:, None] == np.array(test_keys)[None, :]
    assert sims[same].mean() - sims[~same].mean() > 0.5

    model.save(tmp_path / "local_clap.pt")
    table = np.random.default_rng(200).standard_normal((5, 20))
    loaded = LocalClap.load(tmp_path / "local_clap.pt", text_encoder=_TableEncoder(table))
    np.testing.assert_allclose(loaded.audio_vectors(test_audio), a, atol=1e-6)
    scores = text_audio_scores(loaded, test_audio, [f"class {k}" for k in test_keys])
    wrong = text_audio_scores(loaded, test_audio, [f"class {(int(k) + 1) % 5}" for k in test_keys])
    assert scores.mean() > wrong.mean() + 0.5
