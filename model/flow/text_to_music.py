"""Captions → 44.1 kHz stereo waveforms with a trained model: encode text, sample latents, decode, resample.

    captions ──text encoder──▶ (B, L, E) ──sample (t: 0 → 1, CFG)──▶ standardised z (B, D, T)
             ──destandardise──▶ codec latents ──codec.decode──▶ (B, C, N) at codec rate
             ──resample (soxr) + channel map──▶ (B, 2, round(seconds · 44100)) float32

The net samples in ``precision`` (``generate.precision``: fp32, TF32 matmuls allowed on CUDA, or bf16 autocast;
``model.flow.precision``) with the scan backend ``auto`` picks on the device (recorded as ``scan``).
T = ceil(seconds · frame_rate) frames, so the decoded audio covers at least ``seconds``; it is cropped to exactly
``seconds``. Any length works in one pass (the backbone's cost is linear in T); a codec whose decoder memory
grows with length is decoded in overlapping windows (``model/codec/windowed.py``). A decode that comes back
shorter, or with non-finite samples, raises ``GenerationError``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from model.audio.io import resample, to_channels
from model.codec.base import Codec
from model.codec.windowed import decode_long
from model.flow.precision import check_precision, sampling_precision
from model.flow.sampling import SamplerConfig, sample
from model.flow.trained import TrainedModel
from model.network.mamba import ScanChoice, scan_choice
from model.runtime.devices import resolve_device
from model.runtime.errors import InputError
from model.text.base import TextEncoder

log = logging.getLogger(__name__)

OUTPUT_SAMPLE_RATE = 44100
OUTPUT_CHANNELS = 2


class GenerationError(InputError, RuntimeError):
    """Generation produced unusable audio (too short, non-finite); the message says which item and why."""


class TextToMusic:
    """A trained velocity net with its text encoder and codec, ready to render captions to audio.

    ``trained`` is the ``models/final`` artefact (``model.flow.trained.TrainedModel``: ``.net``,
    ``.destandardise``); ``text_encoder`` and ``codec`` follow the interfaces of ``model/text`` and ``model/codec``;
    ``precision`` is ``generate.precision`` (``fp32`` or ``bf16``). ``scan`` is the scan backend that runs on
    ``device`` (probed here, once per device per process).
    """

    def __init__(
        self,
        trained: TrainedModel,
        text_encoder: TextEncoder,
        codec: Codec,
        device: str | torch.device,
        precision: str,
    ):
        self.trained = trained
        self.text_encoder = text_encoder
        self.codec = codec
        self.device = torch.device(device)
        self.precision = check_precision(precision)
        self.net = trained.net.to(self.device).eval()
        self.scan: ScanChoice | None = scan_choice(self.net, self.device)
        self._null: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike, device: str, precision: str) -> TextToMusic:
        """Load ``models/final``-style ``model_dir`` and build the text encoder and codec its config names; the
        net's scan backend is ``auto`` (the fastest that passes a real call on ``device``)."""
        from model.codec import build_codec
        from model.flow.trained import load_trained
        from model.text import build_text_encoder

        check_precision(precision)
        dev = resolve_device(device, "generate.device")
        trained = load_trained(model_dir, scan_backend="auto")
        text_encoder = build_text_encoder(trained.text_params, device=str(dev))
        codec = build_codec(trained.codec_params, device=str(dev))
        engine = cls(trained, text_encoder, codec, dev, precision)
        log.info(
            "loaded %s on %s (text %s, codec %s at %.3f frames/s; %s, %s scan)",
            model_dir,
            dev,
            text_encoder.name,
            codec.name,
            codec.frame_rate,
            precision,
            engine.scan.label if engine.scan else "no",
        )
        return engine

    def n_frames(self, seconds: float) -> int:
        """Latent frames to sample for ``seconds`` of audio: ceil(seconds · frame_rate)."""
        return math.ceil(seconds * self.codec.frame_rate - 1e-9)

    def null_condition(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoded empty caption, (1, L0, E) and (1, L0); computed once."""
        if self._null is None:
            self._null = self.text_encoder.encode([""])
        return self._null

    @torch.no_grad()
    def latents(
        self,
        captions: Sequence[str],
        generators: Sequence[torch.Generator],
        seconds: float,
        sampler: SamplerConfig,
        progress: Any = None,
    ) -> torch.Tensor:
        """Sample and destandardise: codec latents (B, D, ceil(seconds · frame_rate)) float32."""
        if len(captions) != len(generators):
            raise ValueError(f"{len(captions)} captions but {len(generators)} noise generators")
        text, text_mask = self.text_encoder.encode(list(captions))
        null_text, null_mask = self.null_condition()
        with sampling_precision(self.precision, self.device):
            z = sample(
                self.net,
                text,
                text_mask,
                null_text,
                null_mask,
                self.n_frames(seconds),
                sampler.steps,
                sampler.cfg_scale,
                sampler.method,
                list(generators),
                latent_dim=self.codec.latent_dim,
                progress=progress,
            )
        return self.trained.destandardise(z).float()

    @torch.no_grad()
    def generate(
        self,
        captions: Sequence[str],
        generators: Sequence[torch.Generator],
        seconds: float,
        sampler: SamplerConfig,
        progress: Any = None,
    ) -> np.ndarray:
        """Render captions: (B, 2, round(seconds · 44100)) float32 at 44.1 kHz, item b from ``generators[b]``."""
        z = self.latents(captions, generators, seconds, sampler, progress)
        wav = decode_long(self.codec, z).detach().float().cpu().numpy()
        return np.stack(
            [
                to_output(w, self.codec.sample_rate, seconds, caption)
                for w, caption in zip(wav, captions, strict=True)
            ]
        )


def to_output(wav: np.ndarray, sample_rate: int, seconds: float, label: str = "") -> np.ndarray:
    """(C, N) at ``sample_rate`` → (2, round(seconds · 44100)) float32 at 44.1 kHz; raises if short or non-finite."""
    need = round(seconds * OUTPUT_SAMPLE_RATE)
    if not np.isfinite(wav).all():
        raise GenerationError(f"decoded audio for {label!r} has non-finite samples")
    out = to_channels(
        resample(np.ascontiguousarray(wav, dtype=np.float32), sample_rate, OUTPUT_SAMPLE_RATE),
        OUTPUT_CHANNELS,
    )
    if out.shape[-1] < need:
        raise GenerationError(
            f"decoded audio for {label!r} is {out.shape[-1] / OUTPUT_SAMPLE_RATE:.3f} s, shorter than the "
            f"{seconds} s asked for: the codec returned {wav.shape[-1]} samples at {sample_rate} Hz"
        )
    return np.ascontiguousarray(out[:, :need])
