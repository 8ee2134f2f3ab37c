"""The built-in dataset: synthetic instrumental clips in MTG-Jamendo layout, whose tags shape the audio.

Layout under ``out_dir`` (read back by ``model.datasets.jamendo``, exactly like a real download)::

    autotagging.tsv                              official TSV format, CRLF, tags as trailing columns
    splits/split-0/autotagging-{train,validation,test}.tsv
    audio/NN/ID.flac (or .mp3)                   44.1 kHz stereo
    generator.json                               config, code hash and sha256 of every audio file

Each track has one genre, one to three instruments and one mood (Jamendo tag names, see
``model.datasets.music_styles``). Track ``i`` depends only on (seed, i): adding tracks never changes
earlier ones, and two runs are byte-identical. ``exclude_genres`` leaves the tracks of those genres out (of every
split; the others keep their ids, audio and split), e.g. to hold a genre out of a base model's training data. Splits follow a fixed 10-track pattern (7 train,
1 validation, 2 test). A rerun with the same config skips audio files whose sha256 matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from model.datasets import music_styles, render, score, voices
from model.datasets.jamendo import SPLITS, JamendoTrack, audio_relpath, write_tsv
from model.datasets.music_styles import GENRES, INSTRUMENTS, MOODS
from model.runtime.atomic_io import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

GENRE_TAGS = tuple(GENRES)
INSTRUMENT_TAGS = tuple(INSTRUMENTS)
MOOD_TAGS = tuple(MOODS)
SPLIT_PATTERN = ("train", "train", "test", "train", "validation", "train", "train", "test", "train", "train")
FIRST_TRACK_NUMBER = 9_000_000  # far above real Jamendo ids (< 1.5M), so the two never collide
SUBSET = "autotagging"
_FORMATS = {"flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}
_INSTRUMENT_COUNT_P = (0.25, 0.4, 0.35)  # 1, 2 or 3 instruments


@dataclass(frozen=True)
class SyntheticConfig:
    """``data.synthetic`` in params.yaml (meaning of each key: docs/stages/prepare.md; defaults: the params schema)."""

    n_tracks: int
    seconds: float
    seed: int
    audio_format: str
    workers: int
    exclude_genres: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude_genres", tuple(self.exclude_genres))
        unknown = sorted(set(self.exclude_genres) - set(GENRE_TAGS))
        if unknown:
            raise ValueError(
                f"params.yaml: data.synthetic.exclude_genres names unknown genres {unknown} "
                f"(the built-in set has {list(GENRE_TAGS)})"
            )
        if set(self.exclude_genres) >= set(GENRE_TAGS):
            raise ValueError("params.yaml: data.synthetic.exclude_genres leaves no genre to generate")
        if self.n_tracks < 1:
            raise ValueError(f"data.synthetic.n_tracks must be >= 1, got {self.n_tracks}")
        if not 1.0 <= self.seconds <= 600.0:
            raise ValueError(f"data.synthetic.seconds must be between 1 and 600, got {self.seconds}")
        if self.audio_format not in _FORMATS:
            raise ValueError(
                f"data.synthetic.audio_format must be one of {sorted(_FORMATS)}, got {self.audio_format!r}"
            )
        if self.workers < 1:
            raise ValueError(f"data.synthetic.workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class SyntheticLayout:
    """Where a generated dataset lives: the inputs of the Jamendo reader."""

    audio_root: Path
    metadata_tsv: Path
    split_dir: Path
    subset: str


@dataclass(frozen=True)
class TrackSpec:
    index: int
    track_id: str
    genre: str
    instruments: tuple[str, ...]
    mood: str
    split: str


def track_spec(index: int, seed: int) -> TrackSpec:
    """The tags and split of track ``index``: a function of (seed, index) only."""
    rng = np.random.default_rng([seed, index, 0])
    genre = GENRE_TAGS[int(rng.integers(len(GENRE_TAGS)))]
    k = int(rng.choice(3, p=_INSTRUMENT_COUNT_P)) + 1
    chosen = rng.choice(len(INSTRUMENT_TAGS), size=k, replace=False)
    instruments = tuple(INSTRUMENT_TAGS[i] for i in sorted(chosen))
    mood = MOOD_TAGS[int(rng.integers(len(MOOD_TAGS)))]
    track_id = f"track_{FIRST_TRACK_NUMBER + index:07d}"
    return TrackSpec(index, track_id, genre, instruments, mood, SPLIT_PATTERN[index % len(SPLIT_PATTERN)])


def synthesize(
    genre: str, instruments: tuple[str, ...], mood: str, seconds: float, seed: int | list[int]
) -> np.ndarray:
    """Audio for a tag set: float32 (2, round(seconds * 44100)) at 44.1 kHz."""
    for name, value, known in (("genre", genre, GENRES), ("mood", mood, MOODS)):
        if value not in known:
            raise ValueError(f"unknown synthetic {name} {value!r} (known: {sorted(known)})")
    for instrument in instruments:
        if instrument not in INSTRUMENTS:
            raise ValueError(f"unknown synthetic instrument {instrument!r} (known: {sorted(INSTRUMENTS)})")
    rng = np.random.default_rng(seed)
    return render.render(score.compose(genre, tuple(instruments), mood, seconds, rng), rng)


def jamendo_row(spec: TrackSpec, seconds: float, extension: str) -> JamendoTrack:
    n = FIRST_TRACK_NUMBER + spec.index
    return JamendoTrack(
        track_id=spec.track_id,
        artist_id=f"artist_{900000 + n % 100000 // 10:06d}",
        album_id=f"album_{900000 + n % 100000 // 5:06d}",
        path=audio_relpath(spec.track_id, extension),
        duration=seconds,
        genre=(spec.genre,),
        instrument=spec.instruments,
        mood=(spec.mood,),
    )


def code_hash() -> str:
    """sha256 over the synthesiser's source, so generated files are redone when the music changes."""
    digest = hashlib.sha256()
    for module in (music_styles, score, voices, render):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_track(job: tuple[int, SyntheticConfig, str]) -> tuple[str, str]:
    index, cfg, audio_root = job
    spec = track_spec(index, cfg.seed)
    audio = synthesize(spec.genre, spec.instruments, spec.mood, cfg.seconds, [cfg.seed, index, 1])
    relpath = audio_relpath(spec.track_id, cfg.audio_format)
    fmt, subtype = _FORMATS[cfg.audio_format]
    target = Path(audio_root) / relpath
    with atomic_path(target) as tmp:
        sf.write(str(tmp), audio.T, voices.SAMPLE_RATE, format=fmt, subtype=subtype)
    return relpath, _sha256(target)


def generate_dataset(out_dir: str | Path, cfg: SyntheticConfig) -> SyntheticLayout:
    """Write (or complete) the synthetic dataset under ``out_dir``; returns its layout."""
    out = Path(out_dir)
    layout = SyntheticLayout(out / "audio", out / f"{SUBSET}.tsv", out / "splits" / "split-0", SUBSET)
    manifest_path = out / "generator.json"
    identity = {
        # exclusion only filters tracks, each of which stays byte-identical, so it keeps the finished files
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("workers", "exclude_genres")},
        "code_sha256": code_hash(),
    }
    done: dict[str, str] = {}
    specs = [track_spec(i, cfg.seed) for i in range(cfg.n_tracks)]
    specs = [spec for spec in specs if spec.genre not in cfg.exclude_genres]
    wanted = {audio_relpath(spec.track_id, cfg.audio_format) for spec in specs}
    if manifest_path.is_file():
        previous = json.loads(manifest_path.read_text())
        if {k: previous.get(k) for k in identity} == identity:
            done = {k: v for k, v in previous.get("files", {}).items() if k in wanted}
    todo = []
    for spec in specs:
        relpath = audio_relpath(spec.track_id, cfg.audio_format)
        path = layout.audio_root / relpath
        if relpath in done and path.is_file() and _sha256(path) == done[relpath]:
            continue
        done.pop(relpath, None)
        todo.append((spec.index, cfg, str(layout.audio_root)))
    if len(todo) < len(specs):
        log.info(
            "synthetic dataset: %d of %d audio files already complete, generating %d",
            len(specs) - len(todo),
            len(specs),
            len(todo),
        )

    def save_manifest() -> None:
        write_json_atomic(manifest_path, {**identity, "files": dict(sorted(done.items()))})

    bar = tqdm(total=len(todo), desc="synthesising tracks", unit="track")
    if cfg.workers > 1 and len(todo) > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(cfg.workers, mp_context=context) as pool:
            results = pool.map(_write_track, todo, chunksize=4)
            for i, (relpath, sha) in enumerate(results, 1):
                done[relpath] = sha
                bar.update()
                if i % 50 == 0:
                    save_manifest()
    else:
        for i, job in enumerate(todo, 1):
            relpath, sha = _write_track(job)
            done[relpath] = sha
            bar.update()
            if i % 50 == 0:
                save_manifest()
    bar.close()
    save_manifest()

    _remove_stale_audio(layout.audio_root, set(done))
    rows = {spec.track_id: jamendo_row(spec, cfg.seconds, cfg.audio_format) for spec in specs}
    with atomic_path(layout.metadata_tsv) as tmp:
        write_tsv(tmp, rows.values())
    for split in SPLITS:
        with atomic_path(layout.split_dir / f"{SUBSET}-{split}.tsv") as tmp:
            write_tsv(tmp, [rows[s.track_id] for s in specs if s.split == split])
    return layout


def _remove_stale_audio(audio_root: Path, keep: set[str]) -> None:
    """Delete generated audio files of an earlier, different config (only NN/ID.<format> names)."""
    stale = [
        p
        for ext in _FORMATS
        for p in audio_root.glob(f"[0-9][0-9]/*.{ext}")
        if p.stem.isdigit() and p.relative_to(audio_root).as_posix() not in keep
    ]
    for path in stale:
        path.unlink()
    if stale:
        log.info("removed %d audio files left by an earlier synthetic config", len(stale))
