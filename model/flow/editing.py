"""Continuation and inpainting with any trained model, without training: integrate the usual ODE while the
known region of the state is held on its own path.

With x_t = (1 − t)·z + t·x (t = 0 noise, t = 1 data) and the known latents x_k (the input audio through the
model's codec, standardised as in training), after every solver step to t_{i+1} the known frames are reset to

    x[known] ← (1 − t_{i+1})·z[known] + t_{i+1}·x_k[known]          (z: the initial noise of those frames)

so the network always sees a state whose known part is exactly what training showed it at that t, and at t = 1 the
known frames are x_k exactly. The generated frames follow the guided velocity, which reads the known frames through
the bidirectional backbone. Optional re-noising (``repeats`` > 1, RePaint-style): after a step to t' = t + h the
whole state is sent back to t with fresh noise, x_t = (t/t')·x_{t'} + σ·ε, σ² = (1 − t)² − (t·(1 − t')/t')²
(the variance the straight path has at t), and the step is redone; this lets the generated side adapt to the known
side more than once per step and smooths the seam, at ``repeats`` times the cost.

At decode, the output keeps the input audio itself outside the generated span; inside the span, within
``crossfade_s`` of each boundary, the input fades out and the decoded audio fades in (raised cosine), so only the
span is changed.

Shapes: latents (B, D, T); frame masks (B, T) or (T,) bool, True = known; audio (C, N).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from model.audio.io import crop_or_pad, resample, to_channels
from model.codec.windowed import decode_long
from model.flow.precision import sampling_precision
from model.flow.sampling import GuidedVelocity, SamplerConfig, check_solver, solver_step
from model.flow.text_to_music import OUTPUT_CHANNELS, OUTPUT_SAMPLE_RATE, TextToMusic, to_output
from model.runtime.errors import InputError

log = logging.getLogger(__name__)


class EditError(InputError, ValueError):
    """An edit request that cannot be served (region outside the audio, nothing to generate); says what to change."""


@dataclass(frozen=True)
class KnownRegion:
    """``latents`` (B, D, T) standardised known latents (values where ``mask`` is False are ignored) and ``mask``
    (B, T) bool, True = known frame."""

    latents: torch.Tensor
    mask: torch.Tensor


def renoise(x: torch.Tensor, t_from: float, t_to: float, generator: torch.Generator | None) -> torch.Tensor:
    """Move a state at ``t_from`` back to ``t_to`` < ``t_from`` along the straight path with fresh noise."""
    if not 0.0 <= t_to < t_from <= 1.0:
        raise ValueError(f"renoise goes back in time: need 0 <= t_to < t_from <= 1, got {t_to}, {t_from}")
    keep = t_to / t_from
    sigma = math.sqrt(max((1.0 - t_to) ** 2 - (keep * (1.0 - t_from)) ** 2, 0.0))
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return keep * x + sigma * eps


def sample_with_known(
    velocity: Callable[[torch.Tensor, float], torch.Tensor],
    noise: torch.Tensor,
    known: KnownRegion,
    steps: int,
    method: str = "euler",
    repeats: int = 1,
    generator: torch.Generator | None = None,
    progress: Any = None,
) -> torch.Tensor:
    """Integrate t = 0 → 1 from ``noise`` (B, D, T) with the known frames held on their path -> (B, D, T).

    ``repeats`` ≥ 1 solver passes per step (≥ 2: re-noise back with ``generator`` between passes).
    """
    check_solver(steps, method)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if known.latents.shape != noise.shape or known.mask.shape != (noise.shape[0], noise.shape[-1]):
        raise ValueError(
            f"known latents {tuple(known.latents.shape)} / mask {tuple(known.mask.shape)} do not "
            f"match the noise {tuple(noise.shape)}"
        )
    m = known.mask[:, None, :].to(device=noise.device, dtype=noise.dtype)
    target = known.latents.to(device=noise.device, dtype=noise.dtype)

    def pin(x: torch.Tensor, t: float) -> torch.Tensor:
        return x * (1.0 - m) + m * ((1.0 - t) * noise + t * target)

    h = 1.0 / steps
    x, previous = pin(noise, 0.0), None
    for i in range(steps):
        t = i / steps
        for r in range(repeats):
            x_next, k = solver_step(velocity, x, t, h, method, previous)
            x_next = pin(x_next, t + h)
            if r < repeats - 1:
                x = pin(renoise(x_next, t + h, t, generator), t)
        x, previous = x_next, k
        if progress is not None:
            progress(1)
    return x


def continuation_mask(known_frames: int, total_frames: int) -> torch.Tensor:
    """(total_frames,) bool: the first ``known_frames`` frames known, the rest generated."""
    if not 0 < known_frames < total_frames:
        raise EditError(
            f"continuation needs 0 < known frames < total frames, got {known_frames} of {total_frames}"
        )
    return torch.arange(total_frames) < known_frames


def region_frames(start_s: float, end_s: float, frame_rate: float, total_frames: int) -> tuple[int, int]:
    """Frames [f0, f1) to regenerate for the span [start_s, end_s): every frame that touches it."""
    f0 = max(0, math.floor(start_s * frame_rate))
    f1 = min(total_frames, max(f0 + 1, math.ceil(end_s * frame_rate - 1e-9)))
    return f0, f1


def check_region(start_s: float, end_s: float, duration_s: float, source: str = "the input") -> None:
    """Raise ``EditError`` unless 0 <= start < end <= duration (what ``--region A:B`` must satisfy)."""
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0 or end_s <= start_s:
        raise EditError(
            f"region {start_s:g}:{end_s:g} s is empty or negative; give START:END with "
            f"0 <= START < END, e.g. --region 4.0:6.5"
        )
    if end_s > duration_s + 1e-6:
        raise EditError(
            f"region {start_s:g}:{end_s:g} s ends after {source}, which is {duration_s:.3f} s long; "
            f"choose END <= {duration_s:.3f}"
        )


def splice_weights(generated: np.ndarray, fade: int) -> np.ndarray:
    """(N,) weight of the INPUT audio: 1 outside the generated span (``generated`` (N,) bool), 0 inside, with a
    raised-cosine ramp over the first/last ``fade`` samples of each generated run that borders known audio."""
    n = generated.shape[0]
    idx = np.arange(n)
    known_idx = np.where(~generated, idx, -1)
    last_known = np.maximum.accumulate(known_idx)
    next_known = np.where(~generated, idx, n)[::-1]
    next_known = np.minimum.accumulate(next_known)[::-1]
    dist = np.minimum(
        np.where(last_known >= 0, idx - last_known, n + 1), np.where(next_known < n, next_known - idx, n + 1)
    )
    w = np.zeros(n, dtype=np.float32)
    w[~generated] = 1.0
    if fade > 0:
        ramp = dist.astype(np.float64) / (fade + 1)
        inside = generated & (dist <= fade)
        w[inside] = (0.5 + 0.5 * np.cos(np.pi * ramp[inside])).astype(np.float32)
    return w


def splice(original: np.ndarray, decoded: np.ndarray, generated: np.ndarray, fade: int) -> np.ndarray:
    """Input audio (C, N0) outside the generated span, decoded audio (C, N) inside, crossfaded -> (C, N)."""
    n = decoded.shape[-1]
    w = splice_weights(generated[:n], fade)
    return (w * crop_or_pad(original, n) + (1.0 - w) * decoded).astype(np.float32)


@dataclass(frozen=True)
class EditResult:
    """``audio`` (2, N) at 44.1 kHz; ``latents`` (1, D, T) standardised; ``known`` (T,) bool; ``generated`` (N,)
    bool per output sample; ``decoded`` (2, N), the codec decode before splicing."""

    audio: np.ndarray
    latents: torch.Tensor
    known: torch.Tensor
    generated: np.ndarray
    decoded: np.ndarray


class MusicEditor:
    """Continuation and inpainting with a :class:`TextToMusic` engine (its net, text encoder, codec, stats)."""

    def __init__(self, engine: TextToMusic):
        self.engine = engine
        self.codec = engine.codec

    def known_latents(self, audio: np.ndarray, sample_rate: int, n_frames: int) -> torch.Tensor:
        """Input audio (C, N) at ``sample_rate`` -> standardised latents (1, D, n_frames) through the codec."""
        wav = to_channels(
            resample(np.ascontiguousarray(audio, dtype=np.float32), sample_rate, self.codec.sample_rate),
            self.codec.channels,
        )
        spf = self.codec.sample_rate / self.codec.frame_rate
        wav = crop_or_pad(wav, round(n_frames * spf))
        z = self.codec.encode(torch.from_numpy(wav)[None].to(self.engine.device))[..., :n_frames]
        if z.shape[-1] < n_frames:
            z = torch.nn.functional.pad(z, (0, n_frames - z.shape[-1]))
        return self.engine.trained.standardise(z.float())

    @torch.no_grad()
    def edit(
        self,
        caption: str,
        audio: np.ndarray,
        sample_rate: int,
        seconds: float,
        known: torch.Tensor,
        span_s: tuple[float, float],
        sampler: SamplerConfig,
        generator: torch.Generator,
        repeats: int = 1,
        crossfade_s: float = 0.25,
        progress: Any = None,
    ) -> EditResult:
        """Regenerate the frames where ``known`` (T,) is False; output ``seconds`` long at 44.1 kHz stereo, the
        input audio outside ``span_s`` = (start, end) seconds and the decode inside it."""
        n_frames = known.shape[0]
        if bool(known.all()):
            raise EditError("nothing to generate: every frame is known")
        eng = self.engine
        z_known = self.known_latents(audio, sample_rate, n_frames)
        text, text_mask = eng.text_encoder.encode([caption])
        null_text, null_mask = eng.null_condition()
        param = next(eng.net.parameters())
        velocity = GuidedVelocity(
            eng.net,
            text.to(param.device, param.dtype),
            text_mask.to(param.device),
            null_text.to(param.device, param.dtype),
            null_mask.to(param.device),
            sampler.cfg_scale,
        )
        noise = torch.randn((1, self.codec.latent_dim, n_frames), generator=generator).to(
            param.device, param.dtype
        )
        with sampling_precision(eng.precision, eng.device):  # the engine's generate.precision
            x = sample_with_known(
                velocity,
                noise,
                KnownRegion(z_known.to(noise), known[None].to(noise.device)),
                sampler.steps,
                sampler.method,
                repeats,
                generator,
                progress,
            )
        wav = decode_long(self.codec, eng.trained.destandardise(x.float())).float().cpu().numpy()[0]
        decoded = to_output(wav, self.codec.sample_rate, seconds, caption)
        sample_index = np.arange(decoded.shape[-1])
        generated = (sample_index >= round(span_s[0] * OUTPUT_SAMPLE_RATE)) & (
            sample_index < round(span_s[1] * OUTPUT_SAMPLE_RATE)
        )
        original = to_channels(
            resample(np.ascontiguousarray(audio, dtype=np.float32), sample_rate, OUTPUT_SAMPLE_RATE),
            OUTPUT_CHANNELS,
        )
        out = splice(original, decoded, generated, round(crossfade_s * OUTPUT_SAMPLE_RATE))
        return EditResult(out, x.float().cpu(), known.cpu(), generated, decoded)

    def continue_audio(
        self,
        caption: str,
        audio: np.ndarray,
        sample_rate: int,
        seconds: float,
        sampler: SamplerConfig,
        generator: torch.Generator,
        **options: Any,
    ) -> EditResult:
        """Keep the input (C, N) and extend it to ``seconds`` in total."""
        duration = audio.shape[-1] / sample_rate
        if seconds <= duration:
            raise EditError(
                f"--seconds {seconds:g} is not longer than the input ({duration:.3f} s): give the total "
                "length of the output, longer than the input"
            )
        total = self.engine.n_frames(seconds)
        known_frames = math.floor(duration * self.codec.frame_rate)  # the last partial frame is regenerated
        if known_frames < 1:
            raise EditError(
                f"the input is {duration:.3f} s, shorter than one latent frame "
                f"({1 / self.codec.frame_rate:.3f} s); nothing to continue from"
            )
        return self.edit(
            caption,
            audio,
            sample_rate,
            seconds,
            continuation_mask(known_frames, total),
            (duration, seconds),
            sampler,
            generator,
            **options,
        )

    def inpaint(
        self,
        caption: str,
        audio: np.ndarray,
        sample_rate: int,
        start_s: float,
        end_s: float,
        sampler: SamplerConfig,
        generator: torch.Generator,
        **options: Any,
    ) -> EditResult:
        """Regenerate [start_s, end_s) of the input (C, N); the output has the input's length."""
        duration = audio.shape[-1] / sample_rate
        check_region(start_s, end_s, duration)
        total = self.engine.n_frames(duration)
        f0, f1 = region_frames(start_s, end_s, self.codec.frame_rate, total)
        known = torch.ones(total, dtype=torch.bool)
        known[f0:f1] = False
        return self.edit(
            caption, audio, sample_rate, duration, known, (start_s, end_s), sampler, generator, **options
        )
