"""The built-in dataset: Jamendo layout read back by the real reader, determinism, audible tags."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import soundfile as sf
import torch

from model.audio.io import resample
from model.audio.mel import mel_filterbank, stft_magnitude
from model.datasets import render, score
from model.datasets.jamendo import read_splits, read_tsv, resolve_audio
from model.datasets.music_styles import GENRES
from model.datasets.synthetic import (
    GENRE_TAGS,
    INSTRUMENT_TAGS,
    MOOD_TAGS,
    SyntheticConfig,
    generate_dataset,
    synthesize,
    track_spec,
)
from tests.defaults import config, section

SR = 44100


def tree_digest(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    cfg = config(SyntheticConfig, "data.synthetic", n_tracks=10, seconds=2.0, seed=7)
    return root, cfg, generate_dataset(root, cfg)


def test_round_trips_through_the_jamendo_reader(small_dataset):
    root, cfg, layout = small_dataset
    tracks, problems = read_tsv(layout.metadata_tsv)
    assert problems == [] and len(tracks) == 10
    assert layout.metadata_tsv.read_bytes().count(b"\r\n") == 11  # official CRLF rows + header
    splits, _ = read_splits(layout.split_dir)
    assert {k: len(v) for k, v in splits.items()} == {"train": 7, "validation": 1, "test": 2}
    for i, track in enumerate(tracks):
        spec = track_spec(i, cfg.seed)
        assert track.track_id == spec.track_id
        assert track.genre == (spec.genre,) and track.mood == (spec.mood,)
        assert track.instrument == spec.instruments and 1 <= len(track.instrument) <= 3
        assert track.path == f"{int(spec.track_id[6:]) % 100:02d}/{int(spec.track_id[6:])}.flac"
        path = resolve_audio(layout.audio_root, track.path)
        assert path is not None
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.frames) == (SR, 2, 2 * SR)
        assert track.duration == 2.0


def test_two_runs_are_byte_identical_and_rerun_skips(tmp_path, small_dataset):
    root, cfg, _ = small_dataset
    generate_dataset(tmp_path / "again", cfg)
    assert tree_digest(tmp_path / "again") == tree_digest(root)
    audio = next((tmp_path / "again" / "audio").rglob("*.flac"))
    before = audio.stat().st_mtime_ns
    generate_dataset(tmp_path / "again", cfg)  # complete files with the right sha256 are kept
    assert audio.stat().st_mtime_ns == before
    audio.write_bytes(b"corrupt")
    generate_dataset(tmp_path / "again", cfg)
    assert tree_digest(tmp_path / "again") == tree_digest(root)


def test_adding_tracks_keeps_earlier_ones(tmp_path, small_dataset):
    """A 12-track set generated from scratch holds the 10-track set's tracks unchanged: same audio, tags, split."""
    root, cfg, layout = small_dataset
    bigger = generate_dataset(
        tmp_path / "bigger",
        config(SyntheticConfig, "data.synthetic", n_tracks=12, seconds=cfg.seconds, seed=cfg.seed),
    )
    small_tracks, _ = read_tsv(layout.metadata_tsv)
    big_tracks, _ = read_tsv(bigger.metadata_tsv)
    assert len(big_tracks) == 12 and big_tracks[:10] == small_tracks
    small_audio = {p.relative_to(layout.audio_root).as_posix(): p for p in layout.audio_root.rglob("*.flac")}
    big_audio = {p.relative_to(bigger.audio_root).as_posix(): p for p in bigger.audio_root.rglob("*.flac")}
    assert len(big_audio) == 12 and set(small_audio) < set(big_audio)
    for rel, path in small_audio.items():
        assert path.read_bytes() == big_audio[rel].read_bytes(), rel
    small_splits, _ = read_splits(layout.split_dir)
    big_splits, _ = read_splits(bigger.split_dir)
    small_ids = {t.track_id for t in small_tracks}
    for split, ids in small_splits.items():
        assert [t for t in big_splits[split] if t.track_id in small_ids] == list(ids), split
    # and a different seed really gives other tracks (the comparison above could otherwise pass trivially)
    other = config(SyntheticConfig, "data.synthetic", n_tracks=2, seconds=cfg.seconds, seed=cfg.seed + 1)
    assert [track_spec(i, other.seed) for i in range(2)] != [track_spec(i, cfg.seed) for i in range(2)]


def test_mp3_output_is_deterministic(tmp_path):
    cfg = config(SyntheticConfig, "data.synthetic", n_tracks=2, seconds=2.0, seed=1, audio_format="mp3")
    layout = generate_dataset(tmp_path / "a", cfg)
    generate_dataset(tmp_path / "b", cfg)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    tracks, _ = read_tsv(layout.metadata_tsv)
    assert all(t.path.endswith(".mp3") for t in tracks)
    data, sr = sf.read(str(resolve_audio(layout.audio_root, tracks[0].path)))
    assert sr == SR and data.shape[1] == 2 and abs(len(data) - 2 * SR) < 0.05 * SR


def test_tag_vocabulary_is_jamendo_and_all_used():
    assert set(GENRE_TAGS) == {"rock", "electronic", "jazz", "classical", "ambient", "hiphop"}
    assert set(INSTRUMENT_TAGS) == {"piano", "bass", "drums", "strings", "synthesizer", "guitar"}
    assert set(MOOD_TAGS) == {"happy", "sad", "energetic", "calm"}
    specs = [track_spec(i, 0) for i in range(300)]
    assert {s.genre for s in specs} == set(GENRE_TAGS) and {s.mood for s in specs} == set(MOOD_TAGS)
    assert {i for s in specs for i in s.instruments} == set(INSTRUMENT_TAGS)
    assert [s.split for s in specs].count("test") == 60


def test_bad_config_and_tags_are_rejected():
    with pytest.raises(ValueError, match="audio_format"):
        config(SyntheticConfig, "data.synthetic", audio_format="ogg")
    with pytest.raises(ValueError, match="data.synthetic.n_track"):
        section("data.synthetic", n_track=3)
    with pytest.raises(ValueError, match="unknown synthetic instrument 'violin'"):
        synthesize("rock", ("violin",), "happy", 1.0, 0)


# ---- the tags are audible ---------------------------------------------------------------------------


def onset_envelope(audio: np.ndarray, hop: int = 512) -> tuple[np.ndarray, float]:
    x = audio.mean(axis=0)
    n = (len(x) - 2048) // hop
    frames = np.stack([x[i * hop : i * hop + 2048] for i in range(n)]) * np.hanning(2048)
    mag = np.log1p(100 * np.abs(np.fft.rfft(frames, axis=1)))
    return np.maximum(np.diff(mag, axis=0), 0).sum(axis=1), SR / hop


def autocorrelation_tempo(audio: np.ndarray) -> float:
    """Beat tempo from the onset autocorrelation, folded into [80, 160) BPM."""
    env, fps = onset_envelope(audio)
    env = env - env.mean()
    ac = np.correlate(env, env, "full")[len(env) - 1 :]
    lags = np.arange(len(ac))
    valid = (lags >= fps * 60 / 200) & (lags <= fps * 60 / 50)
    bpm = 60 * fps / lags[valid][np.argmax(ac[valid])]
    while bpm >= 160:
        bpm /= 2
    while bpm < 80:
        bpm *= 2
    return bpm


def centroid(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio.mean(axis=0)))
    return float((spectrum * np.fft.rfftfreq(audio.shape[1], 1 / SR)).sum() / spectrum.sum())


@pytest.mark.parametrize("genre", ["hiphop", "jazz", "rock", "electronic"])
def test_genre_sets_the_tempo(genre):
    rng = np.random.default_rng(5)
    s = score.compose(genre, ("drums", "bass"), "happy", 8.0, rng)
    audio = render.render(s, rng)
    assert abs(s.bpm / GENRES[genre].bpm - 1) <= 0.03
    assert autocorrelation_tempo(audio) == pytest.approx(s.bpm, rel=0.04)


def test_backbeat_genres_have_sharper_onsets_than_slow_ones():
    def peakiness(genre):  # 95th percentile over median of the onset envelope: spiky for drum grooves
        env, _ = onset_envelope(synthesize(genre, ("piano", "drums"), "happy", 4.0, 1))
        return np.percentile(env, 95) / np.median(env)

    backbeat = [peakiness(g) for g in ("hiphop", "rock", "electronic")]
    assert max(peakiness("ambient"), peakiness("classical")) < 0.6 * min(backbeat)
    assert GENRES["ambient"].bpm < GENRES["classical"].bpm < GENRES["hiphop"].bpm < GENRES["jazz"].bpm
    assert GENRES["jazz"].bpm < GENRES["rock"].bpm < GENRES["electronic"].bpm


def log_mel_profile(audio: np.ndarray) -> np.ndarray:
    """Mean and std over time of a 64-bin log-mel at ~21 frames/s (what the downstream codec sees)."""
    mono = resample(audio.mean(axis=0, keepdims=True), SR, 22050)[0]
    mag = stft_magnitude(torch.from_numpy(mono), 2048, 1024)
    log_mel = torch.log(torch.clamp(mel_filterbank(22050, 2048, 64) @ mag, min=1e-5)).numpy()
    return np.concatenate([log_mel.mean(axis=1), log_mel.std(axis=1)])


def test_instrument_sets_the_spectrum():
    c = {i: centroid(synthesize("rock", (i,), "happy", 2.0, 0)) for i in INSTRUMENT_TAGS}
    assert c["bass"] < 400 < c["piano"] < c["synthesizer"]
    assert c["drums"] > max(v for k, v in c.items() if k != "drums")
    # each instrument alone, other seed (other key, notes, noise): closer to itself than to any other
    for genre, mood in (("rock", "happy"), ("jazz", "sad")):
        profiles = {i: log_mel_profile(synthesize(genre, (i,), mood, 3.0, 0)) for i in INSTRUMENT_TAGS}
        for inst in INSTRUMENT_TAGS:
            same = np.linalg.norm(log_mel_profile(synthesize(genre, (inst,), mood, 3.0, 99)) - profiles[inst])
            other = min(np.linalg.norm(profiles[j] - profiles[inst]) for j in INSTRUMENT_TAGS if j != inst)
            assert same < other, (genre, mood, inst)


def test_mood_sets_register_loudness_and_density():
    audio = {m: synthesize("jazz", ("piano", "synthesizer"), m, 3.0, 2) for m in MOOD_TAGS}
    assert centroid(audio["happy"]) > 1.5 * centroid(audio["sad"])
    rms = {m: float(np.sqrt(np.mean(a**2))) for m, a in audio.items()}
    assert rms["energetic"] > 1.5 * rms["calm"]
    counts = {}
    for m in ("energetic", "calm"):
        env, _ = onset_envelope(audio[m])
        counts[m] = int((env > env.mean() + env.std()).sum())
    assert counts["energetic"] > 2 * counts["calm"]


def test_parallel_workers_write_the_same_files(tmp_path):
    serial = config(SyntheticConfig, "data.synthetic", n_tracks=3, seconds=1.0, seed=4)
    parallel = config(SyntheticConfig, "data.synthetic", n_tracks=3, seconds=1.0, seed=4, workers=2)
    generate_dataset(tmp_path / "serial", serial)
    generate_dataset(tmp_path / "parallel", parallel)
    assert tree_digest(tmp_path / "serial") == tree_digest(tmp_path / "parallel")


def test_exclude_genres_leaves_a_genre_out_and_keeps_the_other_tracks(tmp_path):
    full_cfg = config(SyntheticConfig, "data.synthetic", n_tracks=12, seconds=1.0, seed=5, workers=1)
    layout = generate_dataset(tmp_path, full_cfg)
    full, _ = read_tsv(layout.metadata_tsv)
    held_out = full[0].genre[0]
    before = tree_digest(layout.audio_root)
    mtimes = {p: p.stat().st_mtime_ns for p in layout.audio_root.rglob("*.flac")}
    cfg = config(
        SyntheticConfig,
        "data.synthetic",
        n_tracks=12,
        seconds=1.0,
        seed=5,
        workers=1,
        exclude_genres=[held_out],
    )
    generate_dataset(tmp_path, cfg)
    kept, _ = read_tsv(layout.metadata_tsv)
    assert kept == [t for t in full if t.genre != (held_out,)] and len(kept) < len(full)
    splits, _ = read_splits(layout.split_dir)
    assert all(t.genre != (held_out,) for split in splits.values() for t in split)
    after = tree_digest(layout.audio_root)
    assert after == {k: v for k, v in before.items() if k in after} and len(after) == len(kept)
    # the kept files were not synthesised again
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in layout.audio_root.rglob("*.flac"))
    with pytest.raises(ValueError, match=r"unknown genres \['polka'\]"):
        config(SyntheticConfig, "data.synthetic", exclude_genres=["polka"])
    with pytest.raises(ValueError, match="leaves no genre"):
        config(SyntheticConfig, "data.synthetic", exclude_genres=list(GENRE_TAGS))
