"""The audio sets the evaluate stage reads: generated clips, dataset splits and a reference set; batch embedding.

- generated: ``<generate.out_dir>/manifest.parquet`` (prompt_id, seed, path, caption) + ``prompts.jsonl``;
- dataset split: ``tracks.parquet`` (tags, caption, split) joined on track_id with the instrumental manifest;
- reference: the test split of that join, or every audio file under ``evaluate.reference_dir``.

Unreadable files are skipped with a logged reason and returned as rejects (path, reason), never silently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evaluation.challenge.prompts import CATEGORIES, Prompt, load_prompts
from model.audio.io import AudioDecodeError, load_audio

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")


@dataclass(frozen=True)
class GeneratedClip:
    prompt_id: str
    seed: int
    path: str


@dataclass(frozen=True)
class DatasetClip:
    track_id: str
    path: str
    caption: str
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)


def read_generated(generated_dir: str | os.PathLike) -> tuple[list[Prompt], list[GeneratedClip]]:
    """Prompts (``prompts.jsonl``) and the clips of ``manifest.parquet`` whose prompt is in that set."""
    import polars as pl

    root = Path(generated_dir)
    prompts_file, manifest_file = root / "prompts.jsonl", root / "manifest.parquet"
    for f in (prompts_file, manifest_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: not found; run the generate stage first (dvc repro generate)")
    prompts = load_prompts(prompts_file)
    manifest = pl.read_parquet(manifest_file)
    missing = [c for c in ("prompt_id", "seed", "path") if c not in manifest.columns]
    if missing:
        raise ValueError(f"{manifest_file}: missing column(s) {', '.join(missing)}")
    known = {p.prompt_id for p in prompts}
    clips = [GeneratedClip(r["prompt_id"], int(r["seed"]), r["path"]) for r in manifest.iter_rows(named=True)]
    stray = sorted({c.prompt_id for c in clips} - known)
    if stray:
        log.warning(
            "%s: %d prompt id(s) not in %s (e.g. %s); ignored",
            manifest_file,
            len(stray),
            prompts_file,
            stray[0],
        )
    clips = sorted((c for c in clips if c.prompt_id in known), key=lambda c: (c.prompt_id, c.seed))
    without = sorted(known - {c.prompt_id for c in clips})
    if without:
        raise ValueError(
            f"{manifest_file}: no generated clip for {len(without)} prompt(s), e.g. {without[0]}; "
            "rerun the generate stage"
        )
    return prompts, clips


def read_dataset_split(
    tracks_path: str | os.PathLike, instrumental_manifest: str | os.PathLike, split: str
) -> list[DatasetClip]:
    """The instrumental audio of one split, with tags and captions, sorted by track id."""
    import polars as pl

    for f in (tracks_path, instrumental_manifest):
        if not Path(f).is_file():
            raise FileNotFoundError(f"{f}: not found; run the prepare and separate stages first")
    tracks = pl.read_parquet(tracks_path).filter(pl.col("split") == split)
    audio = pl.read_parquet(instrumental_manifest).select("track_id", "path")
    joined = tracks.join(audio, on="track_id", how="inner").sort("track_id")
    if joined.height < tracks.height:
        log.warning(
            "%d %s track(s) have no instrumental audio in %s; skipped",
            tracks.height - joined.height,
            split,
            instrumental_manifest,
        )
    return [
        DatasetClip(
            r["track_id"], r["path"], r["caption"], {c: tuple(r[c] or ()) for c in CATEGORIES if c in r}
        )
        for r in joined.iter_rows(named=True)
    ]


def tag_vocabulary(tracks_path: str | os.PathLike) -> dict[str, list[str]]:
    """Every tag per category in ``tracks.parquet`` (all splits); empty when the table is absent."""
    import polars as pl

    if not Path(tracks_path).is_file():
        log.warning("%s not found: the CLAP judge's contrast sets come from the prompts alone", tracks_path)
        return {}
    tracks = pl.read_parquet(tracks_path)
    return {
        c: sorted({t for tags in tracks[c].to_list() for t in (tags or [])})
        for c in CATEGORIES
        if c in tracks.columns
    }


def reference_files(reference_dir: str | os.PathLike) -> list[str]:
    """Every audio file under ``evaluate.reference_dir`` (sorted)."""
    root = Path(reference_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"evaluate.reference_dir {root} is not a directory of reference audio")
    files = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"evaluate.reference_dir {root} holds no {'/'.join(AUDIO_SUFFIXES)} files")
    return files


def embed_paths(
    paths: Sequence[str],
    embedders: dict[str, Callable[[np.ndarray, int], np.ndarray]],
    seconds: float,
    desc: str,
    transform: Callable[[np.ndarray, int], tuple[np.ndarray, int]] | None = None,
    reader: Callable[[str], tuple[np.ndarray, int]] | None = None,
) -> tuple[dict[str, list[np.ndarray | None]], list[dict[str, str]]]:
    """Decode the first ``seconds`` of each path once (or ``reader(path) -> (audio, sr)``, e.g. the packaged
    clip), apply ``transform(audio, sr) -> (audio, sr)`` if given (e.g. a codec round trip), and run every
    embedder on the result.

    Returns ``{embedder key: [per path (W, E) or None when rejected]}`` and the rejects (path, reason).
    """
    out: dict[str, list[np.ndarray | None]] = {k: [] for k in embedders}
    rejects = []
    for path in tqdm(paths, desc=desc, unit="clip", leave=False):
        try:
            audio, sr = reader(path) if reader is not None else load_audio(path, duration_s=seconds)
        except AudioDecodeError as exc:
            log.warning("skipping %s: %s", path, exc.reason)
            rejects.append({"path": str(path), "reason": exc.reason})
            for k in embedders:
                out[k].append(None)
            continue
        if transform is not None:
            audio, sr = transform(audio, sr)
        for key, fn in embedders.items():
            out[key].append(fn(audio, sr))
    return out, rejects
