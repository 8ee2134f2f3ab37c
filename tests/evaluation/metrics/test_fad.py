"""FAD: agreement with independent computations, invariants, the accumulator, the reference cache."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics.fad import (
    EmbeddingStats,
    FrechetDistanceError,
    fad_between,
    frechet_distance,
    mahalanobis_to_reference,
)
from evaluation.metrics.reference_stats import load_or_compute_reference_stats


def _sets(seed=0, n=400, dim=8):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((dim, dim))
    a = rng.standard_normal((n, dim)) @ mix
    b = rng.standard_normal((n + 50, dim)) @ (mix + 0.3 * rng.standard_normal((dim, dim))) + 0.5
    return a, b


def _fd_by_eigh(x, y):
    """Independent route: tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2), both roots by symmetric eigh."""
    m1, m2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(
        (m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum()
    )


def test_agrees_with_eigendecomposition_route():
    a, b = _sets()
    ours = fad_between(EmbeddingStats.from_embeddings(a), EmbeddingStats.from_embeddings(b))
    assert ours == pytest.approx(_fd_by_eigh(a, b), rel=1e-6)
    assert ours > 0.1


def test_zero_for_identical_sets_and_symmetric():
    a, b = _sets(seed=1)
    sa, sb = EmbeddingStats.from_embeddings(a), EmbeddingStats.from_embeddings(b)
    assert abs(fad_between(sa, sa)) < 1e-8
    assert fad_between(sa, sb) == pytest.approx(fad_between(sb, sa), rel=1e-9)


def test_closed_forms_of_the_frechet_formula():
    # 1-D: (m1 - m2)^2 + (sd1 - sd2)^2; diagonal covariances: the same per dimension.
    assert frechet_distance(
        np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])
    ) == pytest.approx(9.0 + 1.0, rel=1e-12)
    var1, var2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.25, 0.5])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)


def test_rank_deficient_covariances_still_give_the_eigh_value():
    rng = np.random.default_rng(3)
    low = rng.standard_normal((30, 3)) @ rng.standard_normal((3, 12))  # rank 3 in 12 dims
    other = rng.standard_normal((30, 3)) @ rng.standard_normal((3, 12))
    ours = fad_between(EmbeddingStats.from_embeddings(low), EmbeddingStats.from_embeddings(other))
    assert np.isfinite(ours)
    assert ours == pytest.approx(_fd_by_eigh(low, other), rel=1e-4)


def test_bad_statistics_are_refused():
    with pytest.raises(FrechetDistanceError, match="shapes"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(FrechetDistanceError, match="non-finite"):
        frechet_distance(np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2))


def test_accumulator_merge_equals_one_shot():
    a, b = _sets(seed=2)
    merged = EmbeddingStats(8).add(a[:100]).merge(EmbeddingStats(8).add(a[100:]).add(b))
    whole = np.concatenate([a, b])
    one_shot = EmbeddingStats.from_embeddings(whole)
    assert merged.count == one_shot.count == len(whole)
    np.testing.assert_allclose(merged.mean, whole.mean(0), rtol=1e-12)
    np.testing.assert_allclose(merged.cov, np.cov(whole, rowvar=False), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(merged.cov, one_shot.cov, rtol=1e-12)
    restored = EmbeddingStats.from_arrays(merged.to_arrays())
    np.testing.assert_array_equal(restored.outer, merged.outer)
    with pytest.raises(ValueError, match="dim"):
        EmbeddingStats(3).add(a)


def test_mahalanobis_is_zero_at_the_mean_and_grows_away_from_it():
    a, _ = _sets(seed=4)
    ref = EmbeddingStats.from_embeddings(a)
    d = mahalanobis_to_reference(np.stack([ref.mean, ref.mean + 0.1, ref.mean + 1.0]), ref)
    assert d[0] == pytest.approx(0.0, abs=1e-12)
    assert 0 < d[1] < d[2]


def test_reference_cache_reuses_and_invalidates(tmp_path):
    files = []
    for i in range(3):
        f = tmp_path / f"ref{i}.bin"
        f.write_bytes(bytes([i]) * 100)
        files.append(str(f))
    calls = []

    def compute(paths):
        calls.append(list(paths))
        return EmbeddingStats.from_embeddings(
            np.arange(len(paths) * 2, dtype=float).reshape(len(paths), 2) ** 2
        )

    cache = tmp_path / "cache"
    first, meta1 = load_or_compute_reference_stats(cache, "emb-a", {"k": 1}, files, compute)
    second, meta2 = load_or_compute_reference_stats(cache, "emb-a", {"k": 1}, files, compute)
    assert len(calls) == 1 and not meta1["cache_hit"] and meta2["cache_hit"]
    np.testing.assert_array_equal(first.outer, second.outer)
    load_or_compute_reference_stats(cache, "emb-b", {"k": 1}, files, compute)
    assert len(calls) == 2  # another embedder
    (tmp_path / "ref0.bin").write_bytes(b"changed")
    _, meta3 = load_or_compute_reference_stats(cache, "emb-a", {"k": 1}, files, compute)
    assert len(calls) == 3 and not meta3["cache_hit"] and meta3["file_list_hash"] != meta1["file_list_hash"]
