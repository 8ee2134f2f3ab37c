"""Audio I/O in one place: decode (wav, flac, ogg, mp3), resample, channel mapping, crop/pad, write.

soundfile (libsndfile, with mp3) decodes and soxr resamples; torchaudio is not used because its PyPI
wheels are CUDA-linked and fail to import beside the CPU torch build. Arrays are channel-first
float32, shape (C, N).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from model.runtime.atomic_io import atomic_path
from model.runtime.errors import InputError

log = logging.getLogger(__name__)

_TRUNCATION_TOLERANCE = 0.02  # mp3 frame counts from a header may be a little off; a cut file is far off


class AudioDecodeError(InputError, RuntimeError):
    """An audio file could not be read or holds no usable samples."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header information; raises AudioDecodeError for missing, empty or unreadable files."""
    p = Path(path)
    if not p.exists():
        raise AudioDecodeError(p, "file does not exist")
    if p.stat().st_size == 0:
        raise AudioDecodeError(p, "file is empty (0 bytes)")
    try:
        info = sf.info(str(p))
    except Exception as exc:  # libsndfile raises several types for bad headers
        raise AudioDecodeError(p, f"unreadable header: {exc}") from exc
    return AudioInfo(sample_rate=int(info.samplerate), frames=int(info.frames), channels=int(info.channels))


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    channels: int | None = None,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode ``path`` to float32 (C, N), optionally resampled and channel-mapped.

    Returns (audio, sample_rate). Only the requested window is decoded. Raises AudioDecodeError when
    the file is missing, empty, truncated to nothing, or contains non-finite samples.
    """
    info = audio_info(path)
    start = int(round(offset_s * info.sample_rate))
    stop = None if duration_s is None else start + int(round(duration_s * info.sample_rate))
    try:
        data, sr = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioDecodeError(path, f"decode failed: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioDecodeError(path, "no samples decoded")
    # A cut-off mp3 keeps its header (and its frame count) but decodes short, without an error.
    expected = max(0, (info.frames if stop is None else min(stop, info.frames)) - start)
    if expected - data.shape[0] > max(_TRUNCATION_TOLERANCE * expected, 0.25 * info.sample_rate):
        raise AudioDecodeError(
            path, f"truncated: decoded {data.shape[0]} of {expected} frames the header declares"
        )
    if not np.isfinite(data).all():
        raise AudioDecodeError(path, "non-finite samples")
    audio = np.ascontiguousarray(data.T)
    if sample_rate is not None and sr != sample_rate:
        audio = resample(audio, sr, sample_rate)
        sr = sample_rate
    if channels is not None:
        audio = to_channels(audio, channels)
    return audio, sr


def resample(audio: np.ndarray, sr_in: int, sr_out: int, quality: str = "HQ") -> np.ndarray:
    """Resample (C, N) float audio with soxr."""
    if sr_in == sr_out:
        return audio
    out = soxr.resample(np.ascontiguousarray(audio.T), sr_in, sr_out, quality=quality)
    return np.ascontiguousarray(out.T.astype(np.float32, copy=False))


def to_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Map (C, N) to ``channels``: mono is duplicated, many channels are averaged to mono."""
    c = audio.shape[0]
    if c == channels:
        return audio
    if channels == 1:
        return audio.mean(axis=0, keepdims=True)
    if c == 1:
        return np.repeat(audio, channels, axis=0)
    if channels < c:
        return audio[:channels]
    raise ValueError(f"cannot map {c} channels to {channels}")


def crop_or_pad(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """Crop (C, N) to its first ``n_samples`` or zero-pad it at the end to that length."""
    n = audio.shape[-1]
    if n >= n_samples:
        return audio[..., :n_samples]
    pad = np.zeros((*audio.shape[:-1], n_samples - n), dtype=audio.dtype)
    return np.concatenate([audio, pad], axis=-1)


def write_audio(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str | None = None
) -> None:
    """Write (C, N) audio atomically; format follows the extension (.wav PCM_16 by default, .flac)."""
    if audio.ndim == 1:
        audio = audio[None]
    if not np.isfinite(audio).all():
        raise ValueError(f"refusing to write non-finite audio to {path}")
    p = Path(path)
    if subtype is None and p.suffix.lower() == ".wav":
        subtype = "PCM_16"
    with atomic_path(p) as tmp:
        sf.write(str(tmp), np.clip(audio.T, -1.0, 1.0), sample_rate, subtype=subtype)
