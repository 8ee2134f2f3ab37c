"""The encode and stats stages on a tiny fixture: Ray worker-count independence, rejects, resume, stats."""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
import yaml

from model.codec.encoding import describe_codec, prepare_out_dir, run_encode
from model.codec.mel import MelCodec, MelCodecConfig
from model.data.clips import ClipPolicy, TrackSource, plan_clips
from model.data.shards import read_shards, shard_paths
from model.runtime.resume_ledger import ledger_path
from pipelines import encode, stats
from tests.defaults import section

SR = 22050
CODEC = section(
    "codec", name="mel", mel={"sample_rate": SR, "n_fft": 512, "hop": 256, "n_mels": 16, "f_max": 11025.0}
)


class LoudIsNaNCodec(MelCodec):
    """The mel codec, except that clips peaking above 0.9 encode to NaN (a stand-in for a codec blow-up)."""

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        z = super().encode(wav)
        z[wav.abs().amax(dim=(1, 2)) > 0.9] = float("nan")
        return z


@pytest.fixture()
def ray_cluster(ray_instance):
    return ray_instance


@pytest.fixture()
def dataset(tmp_path):
    """Six tracks (1.6-4.1 s, one loud, one zero-byte) with manifest and tracks tables, plus a params file."""
    rng = np.random.default_rng(0)
    audio = tmp_path / "audio"
    audio.mkdir()
    ids, paths, seconds = [], [], []
    for i, sec in enumerate((4.1, 1.6, 3.0, 2.5, 3.3)):
        t = np.arange(int(sec * SR)) / SR
        amp = 0.95 if i == 2 else 0.3
        wav = amp * np.sin(2 * np.pi * (110 * (i + 1)) * t) * (1 + 0.05 * rng.standard_normal(t.size)) / 1.2
        path = audio / f"{i}.wav"
        sf.write(path, wav.astype(np.float32), SR, subtype="FLOAT")
        ids.append(f"track_{i:07d}")
        paths.append(str(path))
        seconds.append(sec)
    (audio / "empty.wav").touch()
    ids.append("track_0000099")
    paths.append(str(audio / "empty.wav"))
    seconds.append(2.0)
    inst = tmp_path / "instrumental"
    inst.mkdir()
    pl.DataFrame(
        {
            "track_id": ids[::-1],
            "path": paths[::-1],
            "seconds": seconds[::-1],
            "status": ["passthrough"] * len(ids),
        }
    ).write_parquet(inst / "manifest.parquet")
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    pl.DataFrame(
        {
            "track_id": ids,
            "audio_path": paths,
            "duration": seconds,
            "genre": [["rock"], ["jazz"], ["pop"], [], ["ambient"], ["rock"]],
            "instrument": [["piano"]] * 6,
            "mood": [["calm"], [], [], [], [], []],
            "caption": [f"caption {i}" for i in range(6)],
            "split": ["train", "train", "validation", "train", "test", "train"],
        }
    ).write_parquet(prepared / "tracks.parquet")
    return tmp_path


def write_params(root, out_name: str, workers: int) -> str:
    params = {
        "data": {"prepared_dir": str(root / "prepared")},
        "separate": {"out_dir": str(root / "instrumental")},
        "codec": CODEC,
        "encode": {
            "clip_seconds": 2.0,
            "hop_seconds": 1.5,
            "max_clips_per_track": 2,
            "min_clip_seconds": 1.0,
            "shard_rows": 3,
            "batch_size": 2,
            "workers": workers,
            "out_dir": str(root / out_name),
            "stats_path": str(root / out_name / "stats.json"),
        },
    }
    path = root / f"params-{out_name}.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


def shard_rows(shard_dir):
    return sorted(
        (r.track_id, r.clip_index, r.start_s, r.n_frames, r.caption, r.genre, r.split, r.latent.tobytes())
        for r in read_shards(shard_dir)
    )


def test_one_and_two_workers_give_identical_shards_and_stats(dataset, ray_cluster):
    encode.main(["--params", write_params(dataset, "one", workers=1)])
    encode.main(["--params", write_params(dataset, "two", workers=2)])
    one, two = dataset / "one", dataset / "two"
    assert [p.name for p in shard_paths(one)] == [p.name for p in shard_paths(two)]
    for a, b in zip(shard_paths(one), shard_paths(two), strict=True):
        assert pq.read_table(a).equals(pq.read_table(b), check_metadata=True)
    rows = shard_rows(one)
    assert rows == shard_rows(two)
    # clips: 4.1 s -> 2 (0, 1.5 s), 1.6 s -> 1, 3.0 s -> 2, 2.5 s -> 2, 3.3 s -> 2; the empty file is rejected
    assert [(r[0], r[1]) for r in rows] == [
        ("track_0000000", 0),
        ("track_0000000", 1),
        ("track_0000001", 0),
        ("track_0000002", 0),
        ("track_0000002", 1),
        ("track_0000003", 0),
        ("track_0000003", 1),
        ("track_0000004", 0),
        ("track_0000004", 1),
    ]
    records = {(r.track_id, r.clip_index): r for r in read_shards(one)}
    short = records[("track_0000001", 0)]  # 1.6 s of a 2 s clip: padded, the padding zeroed
    frames = short.latent.shape[1]
    assert short.n_frames == int(np.ceil(1.6 * SR / 256)) < frames
    assert not short.latent[:, short.n_frames :].any() and short.latent[:, : short.n_frames].any()
    assert records[("track_0000002", 0)].caption == "caption 2" and records[("track_0000000", 0)].mood == (
        "calm",
    )
    rejects = pl.read_parquet(one / "rejects.parquet")
    assert rejects["track_id"].to_list() == ["track_0000099"] and "empty" in rejects["reason"][0]

    stats.main(["--params", write_params(dataset, "one", workers=1)])
    result = json.loads((one / "stats.json").read_text())
    train = [r for r in read_shards(one) if r.split == "train"]
    frames = np.concatenate([r.latent[:, : r.n_frames].astype(np.float64) for r in train], axis=1)
    assert (
        result["count"] == frames.shape[1] and result["split"] == "train" and result["codec"]["name"] == "mel"
    )
    np.testing.assert_allclose(result["mean"], frames.mean(axis=1), atol=1e-9)
    np.testing.assert_allclose(result["var"], frames.var(axis=1), atol=1e-9)


def test_nan_latents_are_rejected_and_resume_redoes_only_missing_shards(dataset, ray_cluster):
    tracks = [
        TrackSource(t, p, s)
        for t, p, s in pl.read_parquet(dataset / "instrumental" / "manifest.parquet")
        .select("track_id", "path", "seconds")
        .iter_rows()
    ]
    policy = ClipPolicy(clip_seconds=2.0, hop_seconds=1.5, max_clips_per_track=2, min_clip_seconds=1.0)
    plan = plan_clips(tracks, policy, shard_rows=3, batch_size=2)
    cfg = MelCodecConfig(**CODEC["mel"])
    factory = functools.partial(LoudIsNaNCodec, cfg)
    meta = describe_codec(factory(), 2.0)
    out = dataset / "nan"
    summary = run_encode(plan, out, factory, meta, 2.0, workers=2)
    assert summary.shards_written == len(plan.shards) == 4
    kept = {(r.track_id, r.clip_index) for r in read_shards(out)}
    assert not any(
        track == "track_0000002" for track, _ in kept
    )  # the loud track's clips all went to rejects
    rejects = pl.read_parquet(out / "rejects.parquet")
    assert sorted(rejects["track_id"]) == ["track_0000002", "track_0000002", "track_0000099"]
    assert all("non-finite" in r for r in rejects.filter(pl.col("track_id") == "track_0000002")["reason"])

    # a run killed before shard 1 was written: only that shard is encoded again
    paths = shard_paths(out)
    before = {p.name: (p.stat().st_mtime_ns, pq.read_table(p)) for p in paths}
    paths[1].unlink()
    (out / "_rejects" / paths[1].name).unlink()
    summary = run_encode(plan, out, factory, meta, 2.0, workers=1)
    assert summary.shards_written == 1 and summary.rejects == 3
    for p in shard_paths(out):
        mtime, table = before[p.name]
        assert pq.read_table(p).equals(table)
        assert (p.stat().st_mtime_ns == mtime) == (p.name != paths[1].name)


def test_shards_of_a_different_plan_or_changed_since_are_cleared_and_the_folder_holds_no_bookkeeping(
    tmp_path,
):
    out = tmp_path / "shards"

    def finish(name):
        (out / "_rejects").mkdir(parents=True, exist_ok=True)
        (out / "_rejects" / name).write_bytes(b"r")
        (out / name).write_bytes(b"x")
        ledger.finished(name)

    ledger = prepare_out_dir(out, "plan-a")
    finish("shard-00000.parquet")
    finish("shard-00001.parquet")
    (out / "shard-00002.parquet").write_bytes(b"unrecorded")  # a write the kill cut before the ledger entry
    (out / "plan.json").write_text("{}")  # bookkeeping that earlier versions kept inside the output
    assert prepare_out_dir(out, "plan-a").names == {"shard-00000.parquet", "shard-00001.parquet"}
    assert sorted(p.name for p in out.iterdir()) == ["_rejects", "shard-00000.parquet", "shard-00001.parquet"]
    (out / "shard-00001.parquet").write_bytes(b"y")  # e.g. checked out by DVC from another experiment
    os.utime(out / "shard-00001.parquet", ns=(1, 1))
    assert prepare_out_dir(out, "plan-a").names == {"shard-00000.parquet"}
    assert (
        not (out / "shard-00001.parquet").exists() and not (out / "_rejects" / "shard-00001.parquet").exists()
    )
    assert prepare_out_dir(out, "plan-b").names == set()
    assert (
        not (out / "shard-00000.parquet").exists() and not (out / "_rejects" / "shard-00000.parquet").exists()
    )
    assert ledger_path(out).is_file() and ledger_path(out).parent == tmp_path
