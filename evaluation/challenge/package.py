"""The audio the challenge receives: one ``{id}.wav`` per prompt, exactly ``seconds`` long, packed flat in a zip.

One function makes a packaged clip from a generated file, :func:`packaged_pcm`, and both the submit stage (which
writes it into the zip) and the evaluate stage (which embeds it for FAD, CLAP and the tagger's CCS) call it, so
the local scores are computed on what is sent. It reads the first ``seconds`` (+ 1 s, to know whether anything is
cut) of the file, maps it to ``channels`` and ``sample_rate``, cuts it to exactly ``seconds`` with a
``FADE_SECONDS`` linear fade-out when samples were cut (a hard cut clicks), zero-pads only a clip that is shorter
(logged; generate writes clips of at least 10 s), and rounds to 16-bit PCM. A clip of exactly ``seconds`` at the
target rate and channels is returned sample for sample.

The zip (:func:`write_package`) is deterministic: members sorted by name, stored (PCM does not compress), fixed
1980-01-01 timestamps and 0644 permissions, so the same clips give the same bytes. :func:`check_package` re-opens a
zip and lists every problem, each naming the member: CRC, names (``{id}.wav`` of the prompt set, flat, no
duplicates, nothing else), RIFF WAV, rate, channels, length exactly ``seconds`` (in frames), finite, not silent.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from model.audio.io import load_audio, resample, to_channels

log = logging.getLogger(__name__)

FADE_SECONDS = 0.05  # our choice: long enough not to click, short enough to leave the scored audio as it is
PCM_SCALE = 32768.0  # 16-bit PCM: sample = int16 / 32768, as libsndfile reads it
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold: no build time inside the package
ZIP_NAME = re.compile(r"^(?P<team>[A-Za-z0-9-]+)_(?P<track>[a-z]+)_(?P<attempt>[0-9]+)\.zip$")


@dataclass(frozen=True)
class PackageFormat:
    """The packaged audio: ``submit.sample_rate`` (Hz), ``submit.channels``, ``submit.seconds`` (exact length)."""

    sample_rate: int
    channels: int
    seconds: float

    def __post_init__(self) -> None:
        if self.sample_rate < 8000 or self.channels not in (1, 2) or self.seconds <= 0:
            raise ValueError(
                f"submit.sample_rate {self.sample_rate} (>= 8000), submit.channels {self.channels} (1 or 2) "
                f"and submit.seconds {self.seconds} (> 0) do not describe a package"
            )

    @property
    def frames(self) -> int:
        """Frames per packaged file (441,000 for 10.0 s at 44.1 kHz)."""
        return int(round(self.seconds * self.sample_rate))


def fit_to_package(audio: np.ndarray, sample_rate: int, fmt: PackageFormat) -> np.ndarray:
    """(C, N) float audio at ``sample_rate`` -> (frames, channels) int16, the packaged clip (module docstring)."""
    audio = resample(
        to_channels(np.ascontiguousarray(audio, np.float32), fmt.channels), sample_rate, fmt.sample_rate
    )
    n = fmt.frames
    if audio.shape[1] > n:
        audio = audio[:, :n].copy()
        fade = min(n, int(round(FADE_SECONDS * fmt.sample_rate)))
        audio[:, n - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    elif audio.shape[1] < n:
        log.warning(
            "clip of %.3f s is shorter than the package's %.1f s; zero-padded",
            audio.shape[1] / fmt.sample_rate,
            fmt.seconds,
        )
        audio = np.pad(audio, ((0, 0), (0, n - audio.shape[1])))
    return np.clip(np.round(audio.T.astype(np.float64) * PCM_SCALE), -32768, 32767).astype(np.int16)


def packaged_pcm(path: str | os.PathLike, fmt: PackageFormat) -> np.ndarray:
    """The packaged clip of a generated file -> (frames, channels) int16; raises AudioDecodeError if unreadable."""
    audio, sr = load_audio(path, duration_s=fmt.seconds + 1.0)
    return fit_to_package(audio, sr, fmt)


def pcm_to_float(pcm: np.ndarray) -> np.ndarray:
    """(frames, C) int16 -> (C, frames) float32, the samples a reader of the packaged WAV decodes."""
    return np.ascontiguousarray(pcm.T, dtype=np.float32) / np.float32(PCM_SCALE)


def pcm_sha256(pcm: np.ndarray) -> str:
    """Fingerprint of a packaged clip's samples (interleaved little-endian int16)."""
    return hashlib.sha256(np.ascontiguousarray(pcm, "<i2").tobytes()).hexdigest()


class PackagedClipReader:
    """``reader(path) -> (audio (C, N) float32, rate)``: the packaged clip, for the embedders; keeps each path's
    :func:`pcm_sha256` in ``sha256`` so the submit stage can check it packages the clips that were scored."""

    def __init__(self, fmt: PackageFormat):
        self.fmt = fmt
        self.sha256: dict[str, str] = {}

    def __call__(self, path: str) -> tuple[np.ndarray, int]:
        pcm = packaged_pcm(path, self.fmt)
        self.sha256[str(path)] = pcm_sha256(pcm)
        return pcm_to_float(pcm), self.fmt.sample_rate


def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    """A 16-bit PCM RIFF WAV of (frames, C) int16 samples."""
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_package(path: str | os.PathLike, members: Mapping[str, bytes]) -> Path:
    """Write ``{name: bytes}`` as a flat, deterministic zip (sorted, stored, fixed time and mode)."""
    out = Path(path)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o100644 << 16
            info.create_system = 3  # unix, so the mode is read as such everywhere
            zf.writestr(info, members[name])
    return out


def check_package(
    path: str | os.PathLike, expected_ids: Sequence[str], fmt: PackageFormat, rms_floor: float
) -> list[str]:
    """Every problem of the zip at ``path`` against the prompt ids and the format, one line each naming the
    member (empty = valid)."""
    p = Path(path)
    if not p.is_file():
        return [f"{p.name}: package not found"]
    try:
        zf = zipfile.ZipFile(p)
    except zipfile.BadZipFile as exc:
        return [f"{p.name}: not a readable zip ({exc})"]
    with zf:
        problems = []
        bad = zf.testzip()  # the first member whose bytes do not match their CRC (the others are read below)
        if bad is not None and bad not in {f"{pid}.wav" for pid in expected_ids}:
            problems.append(f"member {bad}: CRC check failed (corrupt zip)")
        expected = {f"{pid}.wav" for pid in expected_ids}
        names = [i.filename for i in zf.infolist()]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                problems.append(f"member {name}: appears more than once")
                continue
            seen.add(name)
            if name in expected:
                try:
                    data = zf.read(name)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    problems.append(f"member {name}: CRC check failed (corrupt zip: {exc})")
                    continue
                problems += [f"member {name}: {what}" for what in check_wav(data, fmt, rms_floor)]
            elif name.endswith("/"):
                problems.append(f"member {name}: a folder; the package is flat ({{id}}.wav at the top level)")
            elif Path(name).name in expected:
                problems.append(
                    f"member {name}: not at the top level; the package is flat, expected {Path(name).name}"
                )
            else:
                problems.append(f"member {name}: not {{id}}.wav for a prompt of the set (stray or misnamed)")
        problems += [
            f"missing member {name}: no audio for prompt {name[:-4]}" for name in sorted(expected - seen)
        ]
    return problems


def check_wav(data: bytes, fmt: PackageFormat, rms_floor: float) -> list[str]:
    """The problems of one packaged WAV's bytes (empty when it is fine)."""
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as exc:  # libsndfile raises several types for bad headers
        return [f"not a readable audio file ({exc})"]
    problems = []
    if info.format not in ("WAV", "WAVEX"):
        problems.append(f"format {info.format}, expected a RIFF WAV")
    if info.samplerate != fmt.sample_rate:
        problems.append(f"sample rate {info.samplerate} Hz, expected {fmt.sample_rate} Hz")
    if info.channels != fmt.channels:
        problems.append(f"{info.channels} channel(s), expected {fmt.channels}")
    if info.frames != fmt.frames:
        seconds = info.frames / info.samplerate if info.samplerate else 0.0
        problems.append(
            f"{info.frames} frames ({seconds:.3f} s), expected exactly {fmt.frames} ({fmt.seconds:g} s)"
        )
    if info.frames == 0:
        return problems
    audio, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    if not np.isfinite(audio).all():
        return [*problems, f"{int((~np.isfinite(audio)).sum())} non-finite (NaN/inf) samples"]
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    if rms <= rms_floor:
        problems.append(f"silent (RMS {rms:.2e} <= floor {rms_floor:.0e})")
    return problems
