"""ACE-Step v1's music DCAE as a codec: 44.1 kHz stereo <-> (B, 128, T) latents at 44100 / 4096 = 10.766 Hz.

Encode, exactly as ACE-Step's ``MusicDCAE.encode`` with ``sr=44100`` (its default ``sr=None`` means 48 kHz and
resamples 48k -> 44.1k; our input is always at 44.1 kHz so no resampling happens):
  1. right-pad to a multiple of 8 · 512 = 4096 samples (only when not already a multiple);
  2. per channel, the vocoder's log-mel (n_fft 2048, hop 512, 128 mels, 40-16000 Hz) -> (B, 2, 128, W = N / 512);
  3. ``(mel - (-11)) / (3 - (-11))`` then Normalize(0.5, 0.5): ``(x - 0.5) / 0.5``;
  4. ``dcae.encoder`` -> (B, 8, 16, W / 8); 5. ``(z - (-1.9091)) · 0.1786``; flattened to (B, 128, T), d = 16·c + h.
Decode reverses it: ``z / 0.1786 + (-1.9091)``, ``dcae.decoder`` -> mel in [-1, 1] -> ``x · 0.5 + 0.5`` ->
``x · 14 - 11``, then the vocoder per channel -> (B, 2, T · 4096) at 44.1 kHz.

The compression (8), latent channels (8) and mel height (128) are read from the loaded configs and checked
(anything but f8c8 with a 128-mel vocoder is refused, naming the folder and the values found).

Latent lengths round up: N samples give ceil(N / 4096) frames, where ACE-Step's ``encode`` returns the same
padded tensor but reports ``latent_lengths`` floored. Ceil keeps every input sample inside a latent frame, so a
decode covers the whole input (10 s -> 108 frames -> 10.03 s, cropped to 10 s; floor would give 107 frames ->
9.94 s, short of the challenge's 10 s); the last frame's tail is the zero padding ACE-Step also encodes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.codec.acestep_snapshot import (
    DCAE_SUBDIR,
    VOCODER_SUBDIR,
    dcae_layout,
    load_dcae,
    load_vocoder,
    require_snapshot,
)
from model.codec.base import Codec
from model.runtime.devices import resolve_device

log = logging.getLogger(__name__)

SAMPLE_RATE = 44100
HOP = 512
MEL_BINS = 128  # the mel height ACE-Step's DCAE was trained on
MIN_MEL, MAX_MEL = -11.0, 3.0
SHIFT_FACTOR, SCALE_FACTOR = -1.9091, 0.1786
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class AceStepCodecConfig:
    """``codec.acestep_dir`` (the local snapshot) and ``codec.acestep.dtype`` (model weights' dtype)."""

    acestep_dir: str
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(
                f"params.yaml: codec.acestep.dtype = {self.dtype!r}; expected one of {', '.join(DTYPES)}"
            )


class AceStepCodec(Codec):
    """ACE-Step music DCAE + vocoder: (B, 2, N) at 44.1 kHz <-> (B, 128, ceil(N / 4096))."""

    name = "acestep"
    sample_rate = SAMPLE_RATE
    channels = 2
    # the DCAE decoder's activations grow with length: decode 512-frame (47.6 s) windows sharing 128 frames,
    # the window ACE-Step's own overlapped decode uses
    decode_window = 512
    decode_overlap = 128

    def __init__(self, cfg: AceStepCodecConfig, device: str | None = "auto"):
        self.cfg = cfg
        root = require_snapshot(cfg.acestep_dir)
        self.device = resolve_device(device, "codec.device")
        self.dtype = DTYPES[cfg.dtype]
        self.dcae = load_dcae(root / DCAE_SUBDIR, dtype=self.dtype).to(self.device)
        self.vocoder = load_vocoder(root / VOCODER_SUBDIR).to(self.device, self.dtype)
        self.vocoder.mel_transform.float()  # the front end stays float32 whatever the weights' dtype
        mel = self.vocoder.cfg
        if (mel.sampling_rate, mel.hop_length) != (SAMPLE_RATE, HOP):
            raise ValueError(
                f"{root / VOCODER_SUBDIR}/config.json: sampling_rate {mel.sampling_rate}, hop_length "
                f"{mel.hop_length}; ACE-Step's codec needs {SAMPLE_RATE} and {HOP}"
            )
        if mel.n_mels != MEL_BINS:
            raise ValueError(
                f"{root / VOCODER_SUBDIR}/config.json: n_mels {mel.n_mels}; ACE-Step's DCAE reads "
                f"{MEL_BINS}-bin mel images"
            )
        layout = dcae_layout(self.dcae.config)  # checked by load_dcae: f8c8
        self.time_compression = layout["encoder_compression"]
        self.frame_rate = SAMPLE_RATE / (HOP * self.time_compression)
        self.latent_channels = layout["latent_channels"]
        self.latent_height = mel.n_mels // self.time_compression
        self.latent_dim = self.latent_channels * self.latent_height
        log.info(
            "ACE-Step codec from %s on %s (%s): latent (%d, %d, T) at %.3f Hz",
            root,
            self.device,
            cfg.dtype,
            self.latent_channels,
            self.latent_height,
            self.frame_rate,
        )

    def num_frames(self, n_samples: int) -> int:
        """ceil(N / 4096): see the module docstring for why not ACE-Step's floor."""
        block = HOP * self.time_compression
        return -(-n_samples // block)

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frame_rate": self.frame_rate,
            "latent_dim": self.latent_dim,
            "latent_shape": [self.latent_channels, self.latent_height],
            "hop": HOP,
            "time_compression": self.time_compression,
            "mel_range": [MIN_MEL, MAX_MEL],
            "shift_factor": SHIFT_FACTOR,
            "scale_factor": SCALE_FACTOR,
            "dtype": self.cfg.dtype,
            "snapshot": Path(self.cfg.acestep_dir).name,
            "vocoder": self.vocoder.cfg.to_dict(),
            "dcae": json.loads(
                json.dumps({k: v for k, v in self.dcae.config.items() if not k.startswith("_")})
            ),
        }

    def normalised_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, 2, N), N a multiple of 4096 -> ACE-Step's DCAE input (B, 2, 128, N / 512) in about [-1, 1]."""
        mel = self.vocoder.mel_transform(wav.float())
        mel = (mel - MIN_MEL) / (MAX_MEL - MIN_MEL)
        return (mel - 0.5) / 0.5

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, C, N) at 44.1 kHz (mono is duplicated) -> latents (B, 128, ceil(N / 4096)) float32."""
        out_device = wav.device
        audio = self.check_wav(wav).to(self.device)
        block = HOP * self.time_compression
        if audio.shape[-1] % block:
            audio = torch.nn.functional.pad(audio, (0, block - audio.shape[-1] % block))
        mel = self.normalised_mel(audio).to(self.dtype)
        latents = self.dcae.encoder(mel).float()
        latents = (latents - SHIFT_FACTOR) * SCALE_FACTOR
        b, c, h, t = latents.shape
        return latents.reshape(b, c * h, t).to(out_device)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, 128, T) -> wav (B, 2, T · 4096) float32 at 44.1 kHz."""
        out_device = z.device
        z = self.check_latents(z).to(self.device)
        b, _, t = z.shape
        latents = z.reshape(b, self.latent_channels, self.latent_height, t) / SCALE_FACTOR + SHIFT_FACTOR
        mel = self.dcae.decoder(latents.to(self.dtype)).float()
        mel = (mel * 0.5 + 0.5) * (MAX_MEL - MIN_MEL) + MIN_MEL
        n_ch, n_mels, width = mel.shape[1:]
        wav = self.vocoder.decode(mel.reshape(b * n_ch, n_mels, width).to(self.dtype)).float()
        return wav.reshape(b, n_ch, -1).to(out_device)
