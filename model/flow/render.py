"""One request → one 44.1 kHz stereo clip: the request handling shared by the single-prompt command line
(``python -m pipelines.generate "caption"``, with ``--continue`` / ``--inpaint``) and the studio page, so that both
give the same audio for the same settings and seed.

    RenderRequest(caption, seconds, sampler, seed, edit=None)     text to music, ``seconds`` long
    RenderRequest(..., edit=Edit("continue", source, ...))        keep ``source``, extend it to ``seconds`` in total
    RenderRequest(..., edit=Edit("inpaint", source, region=...))  redo ``region`` of ``source``, keep its length

``render(engine, request, progress)`` checks the request (``RequestError`` says what to change), draws the noise
from ``torch.Generator().manual_seed(seed)`` and runs :class:`~model.flow.text_to_music.TextToMusic` or
:class:`~model.flow.editing.MusicEditor`; the result is the audio (2, N) and which samples were generated.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from model.audio.io import AudioDecodeError, audio_info, load_audio
from model.flow.editing import EditError, MusicEditor, check_region
from model.flow.sampling import SamplerConfig
from model.flow.text_to_music import OUTPUT_SAMPLE_RATE, TextToMusic
from model.runtime.errors import InputError

log = logging.getLogger(__name__)

EditKind = Literal["continue", "inpaint"]


class RequestError(InputError, ValueError):
    """A render request that cannot be served as given; the message names the option and what to change."""


@dataclass(frozen=True)
class Edit:
    """Continue or inpaint the audio file ``source``; ``label`` is how messages name it (``--inpaint``, "the
    upload"). ``region`` (inpaint only) = (start, end) seconds to regenerate; ``repeats`` ≥ 1 solver passes per
    step; ``crossfade_s`` seconds over which the input fades into the generated span."""

    kind: EditKind
    source: str
    region: tuple[float, float] | None
    repeats: int
    crossfade_s: float
    label: str


@dataclass(frozen=True)
class RenderRequest:
    """``caption`` rendered with ``sampler`` from noise seed ``seed``; ``seconds`` is the output length (with
    ``continue``: the total, input included; ignored by ``inpaint``, whose output has the input's length)."""

    caption: str
    seconds: float
    sampler: SamplerConfig
    seed: int
    edit: Edit | None = None


@dataclass(frozen=True)
class Rendered:
    """``audio`` (2, N) float32 at 44.1 kHz; ``generated`` (N,) bool, True where the audio is new (all True for
    text to music, False where an edit kept its input)."""

    audio: np.ndarray
    generated: np.ndarray

    @property
    def seconds(self) -> float:
        return self.audio.shape[-1] / OUTPUT_SAMPLE_RATE


def check_request(request: RenderRequest) -> None:
    """Raise ``RequestError`` (or ``EditError``) for what no engine can serve, before any model is loaded: an
    empty caption, a bad edit option, an unreadable input, a region outside it, a continuation not longer."""
    if not request.caption.strip():
        raise RequestError('the prompt is empty; give the text to render, e.g. "calm piano ballad"')
    edit = request.edit
    if edit is None:
        return
    if edit.repeats < 1:
        raise RequestError(f"--repeats must be >= 1, got {edit.repeats}")
    if not (math.isfinite(edit.crossfade_s) and edit.crossfade_s >= 0):
        raise RequestError(f"--crossfade must be >= 0 seconds, got {edit.crossfade_s}")
    if edit.kind == "inpaint" and edit.region is None:
        raise RequestError("--inpaint needs --region START:END (seconds), e.g. --region 4.0:6.5")
    if edit.kind == "continue" and edit.region is not None:
        raise RequestError("--region only applies with --inpaint in.wav")
    try:
        info = audio_info(edit.source)
    except AudioDecodeError as exc:
        raise RequestError(f"cannot read {edit.label} {edit.source}: {exc.reason}") from None
    duration = info.frames / info.sample_rate
    if edit.kind == "inpaint":
        assert edit.region is not None
        check_region(*edit.region, duration)
    elif request.seconds <= duration:
        raise EditError(
            f"--seconds {request.seconds:g} is not longer than the input ({duration:.3f} s): give the total "
            "length of the output, longer than the input"
        )


def parse_region(text: str) -> tuple[float, float]:
    """``"4.0:6.5"`` -> (4.0, 6.5) seconds; ``RequestError`` with the expected form otherwise."""
    try:
        start, end = (float(v) for v in text.split(":"))
    except ValueError:
        raise RequestError(f"--region {text!r} is not START:END in seconds, e.g. --region 4.0:6.5") from None
    return start, end


def read_source(path: str, label: str) -> tuple[np.ndarray, int]:
    """Decode the audio to edit at its own rate: (C, N) float32 and its rate; ``RequestError`` naming the file."""
    try:
        audio, sr = load_audio(path)
    except AudioDecodeError as exc:
        raise RequestError(f"cannot read {label} {path}: {exc.reason}") from None
    if sr != OUTPUT_SAMPLE_RATE:
        log.info("%s: %d Hz input; resampled to the codec's and the output's rates", path, sr)
    return audio, sr


def render(engine: TextToMusic, request: RenderRequest, progress: Any = None) -> Rendered:
    """Serve ``request`` with ``engine``; ``progress(n)`` is called after every n solver steps."""
    check_request(request)
    gen = torch.Generator().manual_seed(request.seed)
    edit = request.edit
    if edit is None:
        (wav,) = engine.generate(
            [request.caption], [gen], request.seconds, request.sampler, progress=progress
        )
        return Rendered(wav, np.ones(wav.shape[-1], dtype=bool))
    audio, sr = read_source(edit.source, edit.label)
    editor = MusicEditor(engine)
    options = {"repeats": edit.repeats, "crossfade_s": edit.crossfade_s, "progress": progress}
    if edit.kind == "continue":
        result = editor.continue_audio(
            request.caption, audio, sr, request.seconds, request.sampler, gen, **options
        )
    else:
        assert edit.region is not None  # check_request
        start, end = edit.region
        result = editor.inpaint(request.caption, audio, sr, start, end, request.sampler, gen, **options)
    return Rendered(result.audio, result.generated)
