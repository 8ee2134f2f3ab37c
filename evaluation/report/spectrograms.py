"""The listening report's spectrogram files: one PNG per generated clip and per prompt's reference clip.

``write_spectrograms(rows, out_dir)`` -> ``spectrograms/<prompt_id>/seed-<k>.png``;
``write_reference_spectrograms(refs, out_dir, showcase, roundtrip)`` -> ``spectrograms/<prompt_id>/reference.png``
(and ``reference-codec.png``, the reference through the model's codec, for the showcase prompts). Every image is
written atomically; an unreadable clip gets no image and a logged warning.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from evaluation.report.figures import colourise, png_bytes, spectrogram_image
from model.audio.io import AudioDecodeError, load_audio
from model.runtime.atomic_io import atomic_path

log = logging.getLogger(__name__)

SHOWCASE = 4  # prompts in "Generated beside reference": the first ones by id, not picked by score
RoundTrip = Callable[[np.ndarray, int], tuple[np.ndarray, int]]


def _read_clip(audio_path: str) -> tuple[np.ndarray, int] | None:
    """The first 10 s of ``audio_path``, or None (logged) when it is unreadable."""
    try:
        return load_audio(audio_path, duration_s=10.0)
    except AudioDecodeError as exc:
        log.warning("no spectrogram for %s: %s", audio_path, exc.reason)
        return None


def _write_png(audio: np.ndarray, sr: int, out_dir: Path, rel: str) -> str:
    """The spectrogram of ``audio`` as ``out_dir/rel`` (atomic); returns ``rel``."""
    target = out_dir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(png_bytes(colourise(spectrogram_image(audio, sr))))
    return rel


def write_spectrograms(rows: list[dict[str, Any]], out_dir: Path) -> dict[tuple[str, int], str]:
    """One PNG per clip under ``out_dir/spectrograms``; returns (prompt_id, seed) -> path relative to out_dir."""
    written: dict[tuple[str, int], str] = {}
    shutil.rmtree(
        out_dir / "spectrograms", ignore_errors=True
    )  # no stale images of prompts no longer generated
    for row in tqdm(rows, desc="spectrograms", unit="clip", leave=False):
        clip = _read_clip(row["path"])
        if clip is not None:
            written[(row["prompt_id"], int(row["seed"]))] = _write_png(
                *clip, out_dir, f"spectrograms/{row['prompt_id']}/seed-{row['seed']}.png"
            )
    return written


def references(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """prompt_id -> {id, path, overlap} of its reference clip (the per-clip table's ``reference_*`` columns), for
    the prompts that have one; a table without those columns (written before they existed) gives {}."""
    return {
        r["prompt_id"]: {
            "id": r["reference_id"],
            "path": r["reference_path"],
            "overlap": float(r["reference_overlap"]),
        }
        for r in rows
        if r.get("reference_path")
    }


def showcase_prompts(rows: list[dict[str, Any]]) -> list[str]:
    """The prompts of "Generated beside reference": the first ``SHOWCASE`` prompt ids in sorted order."""
    return sorted({r["prompt_id"] for r in rows})[:SHOWCASE]


def write_reference_spectrograms(
    refs: dict[str, dict[str, Any]], out_dir: Path, showcase: list[str], roundtrip: RoundTrip | None
) -> tuple[dict[str, str], dict[str, str]]:
    """``spectrograms/<prompt_id>/reference.png`` per prompt with a reference and, with ``roundtrip``,
    ``reference-codec.png`` (the reference through the model's codec) for the showcase prompts only.
    Returns (prompt_id -> reference image, prompt_id -> codec image), paths relative to ``out_dir``."""
    plain, codec = {}, {}
    for pid, ref in tqdm(refs.items(), desc="reference spectrograms", unit="clip", leave=False):
        clip = _read_clip(ref["path"])  # decoded once for both images
        if clip is None:
            continue
        plain[pid] = _write_png(*clip, out_dir, f"spectrograms/{pid}/reference.png")
        if roundtrip is not None and pid in showcase:
            codec[pid] = _write_png(*roundtrip(*clip), out_dir, f"spectrograms/{pid}/reference-codec.png")
    return plain, codec
