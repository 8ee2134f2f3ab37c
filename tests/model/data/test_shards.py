"""Latent shards: plain Arrow types that pyarrow and polars read identically; clip policy and plan."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.data.clips import ClipPolicy, TrackSource, plan_clips, valid_frames
from model.data.shards import ClipRecord, ShardMetadata, read_shard, read_shards, shard_metadata, write_shard

D, T = 6, 11
META = ShardMetadata(codec="mel", settings={"name": "mel", "hop": 1024}, latent_shape=(D, T), frame_rate=21.5)


def records(n: int, seed: int = 0, split: str = "train") -> list[ClipRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lat = rng.standard_normal((D, T)).astype(np.float16)
        n_frames = int(rng.integers(1, T + 1))
        lat[:, n_frames:] = 0
        out.append(
            ClipRecord(
                track_id=f"track_{seed}{i:06d}",
                clip_index=i % 2,
                start_s=10.0 * (i % 2),
                n_frames=n_frames,
                latent=lat,
                caption=f"caption {i}",
                genre=("rock",),
                instrument=("piano", "drums")[: i % 3],
                mood=(),
                split=split if i % 3 else "test",
            )
        )
    return out


def test_pyarrow_and_polars_read_the_same_rows(tmp_path):
    recs = records(7)
    path = tmp_path / "shard-00000.parquet"
    write_shard(path, recs, META)
    table = pq.read_table(path)
    assert table.schema.field("latent").type == pa.list_(pa.list_(pa.float16(), T), D)
    assert (
        table.schema.field("clip_index").type == pa.int32()
        and table.schema.field("n_frames").type == pa.int32()
    )
    meta = json.loads(table.schema.metadata[b"flowjam"])
    assert meta["latent_shape"] == [D, T] and meta["dtype"] == "float16" and meta["codec"] == "mel"
    assert meta["version"] == 1 and meta["settings"]["hop"] == 1024

    frame = pl.read_parquet(path)
    assert frame["track_id"].to_list() == table["track_id"].to_pylist()
    for col in ("clip_index", "start_s", "n_frames", "caption", "genre", "instrument", "mood", "split"):
        assert frame[col].to_list() == table[col].to_pylist(), col
    polars_latents = np.stack([np.asarray(row, dtype=np.float32) for row in frame["latent"].to_list()])
    arrow_latents = np.asarray(table["latent"].to_pylist(), dtype=np.float32)
    assert polars_latents.shape == (7, D, T)
    np.testing.assert_array_equal(polars_latents, arrow_latents)
    for rec, lat in zip(read_shard(path), polars_latents, strict=True):
        np.testing.assert_array_equal(rec.latent.astype(np.float32), lat)  # exact (D, T) reshape


def test_read_shards_filters_split_and_roundtrips_exactly(tmp_path):
    first, second = records(5, seed=1), records(4, seed=2)
    write_shard(tmp_path / "shard-00000.parquet", first, META)
    write_shard(tmp_path / "shard-00001.parquet", second, META)
    back = read_shards(tmp_path)
    assert [r.track_id for r in back] == [r.track_id for r in first + second]
    for a, b in zip(back, first + second, strict=True):
        assert (a.clip_index, a.start_s, a.n_frames, a.caption, a.genre, a.instrument, a.split) == (
            b.clip_index,
            b.start_s,
            b.n_frames,
            b.caption,
            b.genre,
            b.instrument,
            b.split,
        )
        assert a.latent.dtype == np.float16 and a.latent.shape == (D, T)
        np.testing.assert_array_equal(a.latent, b.latent)
    train = read_shards(tmp_path, split="train")
    assert [r.track_id for r in train] == [r.track_id for r in first + second if r.split == "train"]
    assert shard_metadata(tmp_path) == META


def test_writer_refuses_bad_latents_and_mixed_dirs(tmp_path):
    bad = records(2)
    bad[1].latent[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        write_shard(tmp_path / "shard-00000.parquet", bad, META)
    assert not list(tmp_path.iterdir())
    write_shard(tmp_path / "shard-00000.parquet", records(2), META)
    other = ShardMetadata(codec="mel", settings={"hop": 512}, latent_shape=(D, T), frame_rate=43.0)
    write_shard(tmp_path / "shard-00001.parquet", records(2), other)
    with pytest.raises(ValueError, match="mixes encode runs"):
        shard_metadata(tmp_path)
    with pytest.raises(FileNotFoundError, match="pipelines.encode"):
        shard_metadata(tmp_path / "none")


def test_clip_policy_windows():
    policy = ClipPolicy(clip_seconds=10.0, hop_seconds=5.0, max_clips_per_track=0, min_clip_seconds=1.0)
    assert policy.windows(22.5) == [(0.0, 10.0), (5.0, 10.0), (10.0, 10.0), (15.0, 7.5), (20.0, 2.5)]
    assert policy.windows(0.5) == []
    assert ClipPolicy(10.0, 10.0, 1, 1.0).windows(30.0) == [(0.0, 10.0)]
    assert ClipPolicy(10.0, 10.0, 3, 1.0).windows(20.5) == [
        (0.0, 10.0),
        (10.0, 10.0),
    ]  # 0.5 s remainder dropped
    assert valid_frames(7.5, 21.5, 216) == 162 and valid_frames(10.0, 21.533, 216) == 216
    with pytest.raises(ValueError, match="encode.hop_seconds"):
        ClipPolicy(10.0, 0.0, 1, 1.0)


def test_plan_is_sorted_and_independent_of_input_order():
    tracks = [TrackSource(f"track_{i:07d}", f"/a/{i}.wav", seconds=5.0 + 3 * i) for i in range(6)]
    policy = ClipPolicy(clip_seconds=4.0, hop_seconds=4.0, max_clips_per_track=3, min_clip_seconds=1.0)
    plan = plan_clips(tracks, policy, shard_rows=5, batch_size=3)
    shuffled = plan_clips(tracks[::-1], policy, shard_rows=5, batch_size=3)
    assert plan == shuffled and plan.fingerprint() == shuffled.fingerprint()
    flat = [c for shard in plan.shards for c in shard]
    assert [(c.track_id, c.clip_index) for c in flat] == sorted((c.track_id, c.clip_index) for c in flat)
    # clips per track: 2 (5 s: 4 + 1), 2 (8 s: the 0 s remainder dropped), then 3 each (max_clips_per_track)
    assert [len(s) for s in plan.shards] == [5, 5, 5, 1] and [len(b) for b in plan.batches(0)] == [3, 2]
    assert all(c.shard_index == s for s, shard in enumerate(plan.shards) for c in shard)
    assert plan.fingerprint() != plan_clips(tracks, policy, shard_rows=4, batch_size=3).fingerprint()
