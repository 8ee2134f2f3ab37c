"""Checks on audio uploaded to the studio, before anything is rendered: format, length, sample rate, channels.

Each failure is an ``UploadError`` whose message the page shows as it is (no traceback).
"""

from __future__ import annotations

import os
from pathlib import Path

from model.audio.io import AudioDecodeError, AudioInfo, audio_info
from model.runtime.errors import InputError

FORMATS = (".wav", ".flac", ".ogg", ".mp3")
MIN_RATE, MAX_RATE = 8_000, 192_000
MIN_SECONDS = 1.0  # continuation needs a few latent frames to continue from; inpainting a region inside it


class UploadError(InputError, ValueError):
    """An upload the studio refuses; the message names the file, what is wrong and what to upload instead."""


def check_upload(path: str | os.PathLike, max_seconds: float) -> AudioInfo:
    """``audio_info`` of an uploaded file that can be edited here, else ``UploadError``."""
    name = Path(path).name
    if Path(path).suffix.lower() not in FORMATS:
        raise UploadError(f"{name}: not an audio format the studio reads; upload {_formats()}")
    try:
        info = audio_info(path)
    except AudioDecodeError as exc:
        reason = exc.reason.replace(str(path), name)  # the server's temporary path means nothing to the user
        raise UploadError(f"{name} cannot be read as audio ({reason}); upload {_formats()}") from None
    if not MIN_RATE <= info.sample_rate <= MAX_RATE:
        raise UploadError(
            f"{name} has a sample rate of {info.sample_rate} Hz; upload audio at "
            f"{MIN_RATE // 1000}–{MAX_RATE // 1000} kHz"
        )
    if info.channels not in (1, 2):
        raise UploadError(f"{name} has {info.channels} channels; upload mono or stereo audio")
    seconds = info.frames / info.sample_rate
    if seconds < MIN_SECONDS:
        raise UploadError(f"{name} is {seconds:.2f} s long; upload at least {MIN_SECONDS:g} s of audio")
    if seconds > max_seconds:
        raise UploadError(
            f"{name} is {seconds:.1f} s long; this studio edits clips of up to {max_seconds:g} s "
            "(--max-seconds)"
        )
    return info


def _formats() -> str:
    return ", ".join(f.lstrip(".").upper() for f in FORMATS[:-1]) + f" or {FORMATS[-1].lstrip('.').upper()}"
