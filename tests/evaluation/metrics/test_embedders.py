"""The weight-free embedder: tempo and timbre separation, 10 s scoring window, naming."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics.embedders import SpectralStatsEmbedder, build_embedder
from evaluation.metrics.spectral_features import DESCRIPTOR_NAMES, DIM

SR = 44100


def _clicks(bpm, seconds=10.0, phase=0.0, pitch=1000.0):
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros_like(t)
    period = 60.0 / bpm
    for start in np.arange(phase, seconds, period):
        idx = (t >= start) & (t < start + 0.05)
        out[idx] += np.sin(2 * np.pi * pitch * (t[idx] - start)) * np.exp(-(t[idx] - start) * 60)
    return np.stack([out, out]).astype(np.float32) * 0.5


def _tone(freq, seconds=10.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6)) + 0.01 * rng.standard_normal(t.size)
    return np.stack([x, x]).astype(np.float32)


def _z(rows):
    rows = np.stack(rows)
    return (rows - rows.mean(0)) / (rows.std(0) + 1e-9)


def test_name_says_it_is_not_clap():
    emb = build_embedder("spectral")
    assert "not CLAP" in emb.name and "weight-free" in emb.name
    assert emb.dim == DIM == len(DESCRIPTOR_NAMES)
    with pytest.raises(ValueError, match="evaluate.embedder"):
        build_embedder("vggish")


def test_separates_tempi():
    emb = SpectralStatsEmbedder()
    clips = [
        _clicks(90, phase=0.0),
        _clicks(90, phase=0.21),
        _clicks(138, phase=0.0),
        _clicks(138, phase=0.13),
    ]
    vecs = [emb.embed(c, SR)[0] for c in clips]
    rhythm = [i for i, n in enumerate(DESCRIPTOR_NAMES) if n.startswith("onset_ac")]
    r = _z([v[rhythm] for v in vecs])
    d = lambda i, j: np.linalg.norm(r[i] - r[j])  # noqa: E731
    assert max(d(0, 1), d(2, 3)) < min(d(0, 2), d(0, 3), d(1, 2), d(1, 3))


def test_separates_timbres_and_registers():
    emb = SpectralStatsEmbedder()
    vecs = np.stack(
        [emb.embed(_tone(f, seed=s), SR)[0] for f, s in ((220, 0), (220, 1), (1760, 0), (1760, 1))]
    )
    assert vecs.shape == (4, DIM) and np.isfinite(vecs).all()
    z = _z(list(vecs))
    d = lambda i, j: np.linalg.norm(z[i] - z[j])  # noqa: E731
    assert max(d(0, 1), d(2, 3)) < min(d(0, 2), d(1, 3))
    centroid = DESCRIPTOR_NAMES.index("centroid_mean")
    assert vecs[2, centroid] > vecs[0, centroid]


def test_only_the_first_ten_seconds_count():
    emb = SpectralStatsEmbedder()
    head = _tone(440, seconds=10.0)
    longer = np.concatenate([head, _clicks(120, seconds=3.0)], axis=1)
    np.testing.assert_allclose(emb.embed(longer, SR), emb.embed(head, SR), rtol=1e-5, atol=1e-6)
    short = emb.embed(head[:, : SR * 4], SR)  # shorter input is zero-padded to 10 s
    assert short.shape == (1, DIM) and np.isfinite(short).all()
