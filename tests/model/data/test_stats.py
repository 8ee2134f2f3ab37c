"""Streaming, mergeable latent statistics against numpy over the concatenated valid frames."""

from __future__ import annotations

import numpy as np
import pytest

from model.data.shards import ClipRecord, ShardMetadata, write_shard
from model.data.stats import StatsAccumulator, accumulate, shard_stats


def clips(seed: int, n: int, d: int = 5, t: int = 40) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lat = rng.standard_normal((d, t)) * rng.uniform(0.1, 50, (d, 1)) + rng.uniform(-100, 100, (d, 1))
        out.append((lat, int(rng.integers(1, t + 1))))
    return out


def reference(pairs):
    frames = np.concatenate([lat[:, :n] for lat, n in pairs], axis=1).astype(np.float64)
    return frames.shape[1], frames.mean(axis=1), frames.var(axis=1)


def test_merged_streaming_accumulators_equal_numpy():
    parts = [clips(seed, n) for seed, n in ((0, 7), (1, 1), (2, 13))]
    accs = [accumulate(p, dim=5) for p in parts]
    merged = StatsAccumulator(5)
    for acc in (accs[2], StatsAccumulator(5), accs[0], accs[1]):  # any order, an empty one included
        merged.merge(acc)
    count, mean, var = reference([c for p in parts for c in p])
    assert merged.count == count
    np.testing.assert_allclose(merged.mean, mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(merged.var, var, rtol=0, atol=1e-9)
    single = accumulate([c for p in parts for c in p], dim=5)
    np.testing.assert_allclose(single.var, var, rtol=0, atol=1e-9)


def test_padding_frames_are_ignored_and_empty_is_an_error():
    acc = StatsAccumulator(2)
    lat = np.array([[1.0, 3.0, 1e6], [2.0, 2.0, -1e6]])
    acc.update(lat, n_frames=2)
    np.testing.assert_allclose(acc.mean, [2.0, 2.0])
    np.testing.assert_allclose(acc.var, [1.0, 0.0])
    with pytest.raises(ValueError, match="no frames"):
        _ = StatsAccumulator(3).var
    with pytest.raises(ValueError, match=r"\(2, T\)"):
        acc.update(np.zeros((3, 4)))


def test_shard_stats_uses_train_split_valid_frames(tmp_path):
    pairs = clips(3, 9, d=4, t=12)
    meta = ShardMetadata(codec="mel", settings={}, latent_shape=(4, 12), frame_rate=10.0)
    recs = []
    for i, (lat, n) in enumerate(pairs):
        lat = lat.astype(np.float16)
        lat[:, n:] = 0
        recs.append(ClipRecord(f"t{i}", 0, 0.0, n, lat, split="train" if i % 3 else "validation"))
    write_shard(tmp_path / "shard-00000.parquet", recs[:5], meta)
    write_shard(tmp_path / "shard-00001.parquet", recs[5:], meta)
    acc = shard_stats(tmp_path, split="train")
    count, mean, var = reference([(r.latent, r.n_frames) for r in recs if r.split == "train"])
    assert acc.count == count
    np.testing.assert_allclose(acc.mean, mean, atol=1e-9)
    np.testing.assert_allclose(acc.var, var, atol=1e-9)
    with pytest.raises(ValueError, match="no clips of split 'test'"):
        shard_stats(tmp_path, split="test")
