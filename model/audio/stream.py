"""Bounded-memory audio streaming: validate a whole file, decode it in chunks, process it in cross-faded windows.

Long tracks never sit in memory whole: decoding is sequential (soundfile), resampling continuous across chunks
(``soxr.ResampleStream``), and a processor sees windows of ``window`` samples that overlap by ``fade`` samples and
are blended with complementary linear ramps, so a position-independent processor gives exactly its whole-signal
output.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from model.audio.io import AudioDecodeError, audio_info, to_channels

log = logging.getLogger(__name__)

# mp3 headers may overstate the length by up to a couple of 1152-sample frames (encoder delay/padding)
TRUNCATION_SLACK_FRAMES = 2 * 1152
TRUNCATION_SLACK_FRACTION = 0.005


@dataclass(frozen=True)
class AudioScan:
    """What one full decode of a file found: length, rate, and the mono mix's mean and std."""

    frames: int
    sample_rate: int
    channels: int
    mean: float
    std: float

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def iter_decoded(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    channels: int | None = None,
    chunk_frames: int = 1 << 16,
) -> Iterator[np.ndarray]:
    """Decode ``path`` chunk by chunk as float32 (C, n), optionally resampled/channel-mapped.

    Raises AudioDecodeError for missing/empty/unreadable files, non-finite samples, and files that decode to
    noticeably fewer frames than their header promises (truncated downloads).
    """
    info = audio_info(path)
    resampler = None
    if sample_rate is not None and sample_rate != info.sample_rate:
        resampler = soxr.ResampleStream(
            info.sample_rate, sample_rate, info.channels, dtype="float32", quality="HQ"
        )
    decoded = 0
    try:
        with sf.SoundFile(str(path)) as fh:
            while True:
                data = fh.read(chunk_frames, dtype="float32", always_2d=True)
                last = data.shape[0] < chunk_frames
                decoded += data.shape[0]
                if not np.isfinite(data).all():
                    raise AudioDecodeError(path, f"non-finite samples near frame {decoded}")
                if resampler is not None:
                    data = resampler.resample_chunk(data, last=last)
                if data.shape[0]:
                    out = np.ascontiguousarray(data.T)
                    yield out if channels is None else to_channels(out, channels)
                if last:
                    break
    except AudioDecodeError:
        raise
    except Exception as exc:  # libsndfile/mpg123 raise several types for corrupt streams
        raise AudioDecodeError(path, f"decode failed after {decoded} frames: {exc}") from exc
    if decoded == 0:
        raise AudioDecodeError(path, "no samples decoded")
    slack = max(TRUNCATION_SLACK_FRAMES, int(TRUNCATION_SLACK_FRACTION * info.frames))
    if decoded < info.frames - slack:
        raise AudioDecodeError(
            path, f"truncated: decoded {decoded} of the {info.frames} frames its header declares"
        )


def scan_audio(path: str | os.PathLike) -> AudioScan:
    """Decode the whole file once (in chunks) to validate it and measure the mono mix's mean/std."""
    info = audio_info(path)
    n = 0
    total = 0.0
    total_sq = 0.0
    for chunk in iter_decoded(path):
        mono = chunk.mean(axis=0, dtype=np.float64)
        n += mono.size
        total += float(mono.sum())
        total_sq += float(np.dot(mono, mono))
    mean = total / n
    std = float(np.sqrt(max(total_sq / n - mean * mean, 0.0)))
    return AudioScan(frames=n, sample_rate=info.sample_rate, channels=info.channels, mean=mean, std=std)


def crossfade_windows(
    chunks: Iterable[np.ndarray],
    process: Callable[[np.ndarray], np.ndarray],
    window: int,
    fade: int,
) -> Iterator[np.ndarray]:
    """Apply ``process`` ((C, n) -> (C, n)) to windows of ``window`` samples overlapping by ``fade``.

    Consecutive windows start ``window - fade`` apart; inside each overlap the earlier output fades out and the
    later one fades in with complementary linear ramps (weights sum to 1). Yields output chunks (C, n) whose
    concatenation has the input's length. Memory: O(window + one input chunk).
    """
    if fade < 1 or window < 2 * fade + 1:
        raise ValueError(f"need 1 <= fade and window >= 2 * fade + 1, got window={window}, fade={fade}")
    ramp_in = ((np.arange(fade, dtype=np.float64) + 0.5) / fade).astype(np.float32)
    ramp_out = 1.0 - ramp_in
    source = iter(chunks)
    buf: np.ndarray | None = None
    pending: np.ndarray | None = None
    exhausted = False
    while True:
        while not exhausted and (buf is None or buf.shape[1] <= window):
            try:
                chunk = next(source)
            except StopIteration:
                exhausted = True
                break
            buf = chunk if buf is None else np.concatenate([buf, chunk], axis=1)
        if buf is None or buf.shape[1] == 0:
            return
        is_last = exhausted and buf.shape[1] <= window
        seg = buf[:, :window]
        out = np.asarray(process(seg), dtype=np.float32)
        if out.shape != seg.shape:
            raise ValueError(f"processor returned {out.shape} for a window of shape {seg.shape}")
        if pending is not None:
            out[:, :fade] = out[:, :fade] * ramp_in + pending
        if is_last:
            yield out
            return
        pending = out[:, -fade:] * ramp_out
        yield out[:, : window - fade]
        buf = buf[:, window - fade :]
