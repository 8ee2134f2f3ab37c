"""The separate stage: pass-through and htdemucs (tiny real model), rejects, resume after an interruption, Ray."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import soundfile as sf
import yaml

from model.separation.instrumental import (
    SeparationWorker,
    TrackAudio,
    output_path,
    prepare_audio_dir,
    run_separation,
)
from model.separation.vocal_remover import SeparationConfig
from pipelines import separate
from tests.defaults import config
from tests.model.separation.test_vocal_remover import save_local_repo, stereo, tiny_htdemucs


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    repo = tmp_path_factory.mktemp("demucs_repo")
    save_local_repo(tiny_htdemucs(), repo)
    return repo


def make_tracks(root, n_good: int = 3) -> list[TrackAudio]:
    """``n_good`` decodable tracks (wav and mp3, 1.5 s) plus a truncated mp3 and a zero-byte file."""
    audio = root / "audio"
    audio.mkdir(parents=True)
    tracks = []
    for i in range(n_good):
        path = audio / f"{i:02d}.{'mp3' if i % 2 else 'wav'}"
        sf.write(path, stereo(1.5, seed=i).T, 44100, **({"format": "MP3"} if i % 2 else {}))
        tracks.append(TrackAudio(f"track_{i:07d}", str(path)))
    good_mp3 = audio / "full.mp3"
    sf.write(good_mp3, stereo(3.0).T, 44100, format="MP3")
    truncated = audio / "truncated.mp3"
    truncated.write_bytes(good_mp3.read_bytes()[: good_mp3.stat().st_size // 3])
    empty = audio / "empty.mp3"
    empty.touch()
    tracks += [TrackAudio("track_0000900", str(truncated)), TrackAudio("track_0000901", str(empty))]
    return tracks


def write_stage_inputs(root, tracks, separate_section) -> str:
    prepared = root / "prepared"
    prepared.mkdir()
    pl.DataFrame(
        {"track_id": [t.track_id for t in tracks], "audio_path": [t.audio_path for t in tracks]}
    ).write_parquet(prepared / "tracks.parquet")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"prepared_dir": str(prepared)}, "separate": separate_section}))
    return str(params)


def htdemucs_section(root, weights_dir, workers: int) -> dict:
    return {
        "model": "tinyht",
        "weights_dir": str(weights_dir),
        "segment": 4.0,
        "overlap": 0.25,
        "shifts": 0,
        "block_seconds": 9.0,
        "device": "cpu",
        "workers": workers,
        "audio_format": "flac",
        "out_dir": str(root / "instrumental"),
    }


def test_passthrough_validates_and_rejects_bad_files(tmp_path, run_records):
    tracks = make_tracks(tmp_path)
    params = write_stage_inputs(
        tmp_path, tracks, {"model": "none", "workers": 2, "out_dir": str(tmp_path / "instrumental")}
    )
    separate.main(["--params", params])
    manifest = pl.read_parquet(tmp_path / "instrumental" / "manifest.parquet")
    rejects = pl.read_parquet(tmp_path / "instrumental" / "rejects.parquet")
    assert manifest["track_id"].to_list() == [t.track_id for t in tracks[:3]]
    assert manifest["path"].to_list() == [t.audio_path for t in tracks[:3]]
    assert set(manifest["status"]) == {"passthrough"}
    np.testing.assert_allclose(manifest["seconds"].to_numpy(), 1.5, atol=0.01)
    reasons = dict(zip(rejects["track_id"], rejects["reason"], strict=True))
    assert "truncated" in reasons["track_0000900"] and "empty" in reasons["track_0000901"]
    assert not (tmp_path / "instrumental" / "provenance.json").exists()  # run facts: the run record
    assert json.loads((run_records / "separate.json").read_text())["written"] == 3


def test_htdemucs_interrupted_run_resumes_without_redoing_finished_files(tmp_path, weights_dir):
    tracks = make_tracks(tmp_path)
    cfg = config(SeparationConfig, "separate", **htdemucs_section(tmp_path, weights_dir, workers=1))
    calls: list[str] = []

    class CountingWorker(SeparationWorker):
        def __init__(self, fail_after: int | None):
            super().__init__(cfg)
            self.fail_after = fail_after

        def run(self, track):
            if self.fail_after is not None and len(calls) == self.fail_after:
                raise KeyboardInterrupt  # the run is killed while working on this track
            calls.append(track.track_id)
            return super().run(track)

    with pytest.raises(KeyboardInterrupt):
        run_separation(tracks, cfg, worker_factory=lambda: CountingWorker(fail_after=2))
    finished = [output_path(cfg.out_dir, t.track_id, "flac") for t in tracks[:2]]
    assert all(p.exists() for p in finished)
    assert not list((tmp_path / "instrumental" / "audio").glob(".*"))  # no half-written temporaries
    mtimes = [p.stat().st_mtime_ns for p in finished]

    calls.clear()
    results = run_separation(tracks, cfg, worker_factory=lambda: CountingWorker(fail_after=None))
    assert calls == [t.track_id for t in tracks[2:]]  # only the unfinished track and the two bad ones
    assert [p.stat().st_mtime_ns for p in finished] == mtimes
    ok = [r for r in results if not r.rejected]
    assert [r.track_id for r in ok] == [t.track_id for t in tracks[:3]]
    assert [r.reused for r in ok] == [True, True, False]
    assert {r.track_id for r in results if r.rejected} == {"track_0000900", "track_0000901"}
    for r in ok:
        data, sr = sf.read(r.path, always_2d=True)
        assert sr == 44100 and data.shape == (int(1.5 * 44100), 2) and r.seconds == pytest.approx(1.5)


def test_htdemucs_stage_with_two_ray_workers(tmp_path, weights_dir, ray_instance):
    tracks = make_tracks(tmp_path)
    params = write_stage_inputs(tmp_path, tracks, htdemucs_section(tmp_path, weights_dir, workers=2))
    separate.main(["--params", params])
    manifest = pl.read_parquet(tmp_path / "instrumental" / "manifest.parquet")
    rejects = pl.read_parquet(tmp_path / "instrumental" / "rejects.parquet")
    assert manifest["track_id"].to_list() == [t.track_id for t in tracks[:3]]
    assert set(manifest["status"]) == {"separated"}
    assert sorted(rejects["track_id"]) == ["track_0000900", "track_0000901"]
    # Ray workers produce what the in-process path produces
    cfg = config(SeparationConfig, "separate", **htdemucs_section(tmp_path / "again", weights_dir, workers=1))
    reference = run_separation(tracks[:1], cfg)[0]
    a, _ = sf.read(manifest["path"][0])
    b, _ = sf.read(reference.path)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_files_made_under_other_settings_or_for_dropped_tracks_are_removed(tmp_path, weights_dir):
    cfg = config(SeparationConfig, "separate", **htdemucs_section(tmp_path, weights_dir, workers=1))
    audio = tmp_path / "instrumental" / "audio"
    prepare_audio_dir(cfg, {"a", "b"})
    for name in ("a", "b", "gone"):
        (audio / f"{name}.flac").write_bytes(b"x")
    prepare_audio_dir(cfg, {"a", "b"})  # same settings: only the dropped track's file goes
    assert sorted(p.name for p in audio.glob("*.flac")) == ["a.flac", "b.flac"]
    changed = config(
        SeparationConfig, "separate", **{**htdemucs_section(tmp_path, weights_dir, workers=1), "overlap": 0.5}
    )
    prepare_audio_dir(changed, {"a", "b"})
    assert not list(audio.glob("*.flac"))
