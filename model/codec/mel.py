"""The weight-free mel codec: log-mel latents; decode by non-negative mel inversion + fast Griffin-Lim.

Encode: mono at ``sample_rate``, right-padded to T·hop samples, Hann STFT (centred, ``n_fft``, ``hop``),
power |X|², Slaney mel filterbank, ``log(max(mel, log_floor))`` -> (B, n_mels, T) with T = ceil(N / hop), so
frame t is centred on sample t·hop and ``frame_rate = sample_rate / hop``.

Decode: ``exp`` back to mel power minus the floor, a non-negative least-squares estimate of the linear power spectrum
(multiplicative updates started from the filterbank pseudo-inverse; power rather than magnitude so that
spreading a band over its bins keeps the loudness), its square root as magnitude, then Griffin-Lim with momentum
(Perraudin et al. 2013, "fast Griffin-Lim") from a seeded random phase that is the same for every batch
item, so decoding is deterministic and independent of batch composition. Output: (B, 1, T·hop).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from model.audio.mel import mel_filterbank
from model.codec.base import Codec
from model.runtime.devices import resolve_device


@dataclass(frozen=True)
class MelCodecConfig:
    """``codec.mel`` in params.yaml (meaning of each key: docs/stages/encode.md; defaults: the params schema)."""

    sample_rate: int
    n_fft: int
    hop: int
    n_mels: int
    f_min: float
    f_max: float
    log_floor: float
    griffin_lim_iters: int
    griffin_lim_momentum: float
    inversion_iters: int
    phase_seed: int

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ValueError(f"params.yaml: codec.mel.{key} = {getattr(self, key)!r}: {what}")

        need(self.sample_rate > 0, "sample_rate", "must be a positive integer")
        need(self.n_fft >= 16, "n_fft", "must be at least 16")
        need(
            0 < self.hop <= self.n_fft // 2,
            "hop",
            "must be in (0, n_fft / 2] so the overlap-add is invertible",
        )
        need(0 < self.n_mels <= self.n_fft // 2 + 1, "n_mels", "must be in (0, n_fft / 2 + 1]")
        need(0.0 <= self.f_min < self.f_max, "f_min", "must be >= 0 and below codec.mel.f_max")
        need(self.f_max <= self.sample_rate / 2, "f_max", "must not exceed sample_rate / 2")
        need(self.log_floor > 0, "log_floor", "must be > 0")
        need(self.griffin_lim_iters >= 0, "griffin_lim_iters", "must be >= 0")
        need(0.0 <= self.griffin_lim_momentum < 1.0, "griffin_lim_momentum", "must be in [0, 1)")
        need(self.inversion_iters >= 0, "inversion_iters", "must be >= 0")


class MelCodec(Codec):
    """Log-mel codec: (B, C, N) at ``sample_rate`` <-> (B, n_mels, T), mono, ``sample_rate / hop`` frames/s."""

    name = "mel"
    channels = 1

    def __init__(self, cfg: MelCodecConfig, device: str | None = "cpu"):
        self.cfg = cfg
        self.device = resolve_device(device, "codec.device")
        self.sample_rate = int(self.cfg.sample_rate)
        self.latent_dim = int(self.cfg.n_mels)
        self.frame_rate = self.sample_rate / self.cfg.hop
        c = self.cfg
        self.filterbank = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.f_min, c.f_max).to(self.device)
        self.filterbank_pinv = torch.linalg.pinv(self.filterbank.double()).float().to(self.device)
        self.window = torch.hann_window(c.n_fft, device=self.device)

    def num_frames(self, n_samples: int) -> int:
        return math.ceil(n_samples / self.cfg.hop)

    def settings(self) -> dict[str, Any]:
        cfg = asdict(self.cfg)
        return {
            "name": self.name,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frame_rate": self.frame_rate,
            "latent_dim": self.latent_dim,
            **cfg,
        }

    def _stft(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) -> complex (B, F, frames), centred Hann STFT; zero edge padding so any N >= 1 works."""
        return torch.stft(
            wav,
            self.cfg.n_fft,
            hop_length=self.cfg.hop,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, C, N) -> log-mel (B, n_mels, ceil(N / hop)); channels are mixed to mono."""
        out_device = wav.device
        mono = self.check_wav(wav)[:, 0].to(self.device)
        n_frames = self.num_frames(mono.shape[-1])
        mono = torch.nn.functional.pad(mono, (0, n_frames * self.cfg.hop - mono.shape[-1]))
        power = self._stft(mono).abs().square()[..., :n_frames]
        mel = torch.matmul(self.filterbank, power)
        return torch.log(mel.clamp_min(self.cfg.log_floor)).to(out_device)

    def linear_power(self, mel: torch.Tensor) -> torch.Tensor:
        """Non-negative least-squares |STFT|² (B, F, T) for mel power (B, n_mels, T).

        Multiplicative updates x <- x * (Mᵀy) / (MᵀMx) keep x >= 0 and decrease ||Mx - y||²; they start from
        the clamped pseudo-inverse (plus a small positive floor so no bin is stuck at zero).
        """
        fb = self.filterbank
        x = torch.matmul(self.filterbank_pinv, mel).clamp_min(0.0) + self.cfg.log_floor
        numerator = torch.matmul(fb.T, mel)
        gram = fb.T @ fb
        for _ in range(self.cfg.inversion_iters):
            x = x * numerator / (torch.matmul(gram, x) + 1e-12)
        # bins that no mel band covers (outside f_min..f_max) stay silent
        covered = (fb.sum(dim=0) > 0).to(x.dtype)[:, None]
        return x * covered

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, n_mels, T) log-mel -> wav (B, 1, T·hop) at ``sample_rate``."""
        out_device = z.device
        z = self.check_latents(z).to(self.device)
        n_frames = z.shape[-1]
        # one extra (repeated) frame so the centred inverse covers exactly T·hop samples, as encode did
        # the floor is where encode put silence: remove it so silence decodes to silence
        mel = (torch.exp(torch.cat([z, z[..., -1:]], dim=-1)) - self.cfg.log_floor).clamp_min(0.0)
        mag = self.linear_power(mel).sqrt()
        wav = self.griffin_lim(mag, n_frames * self.cfg.hop)
        return wav[:, None, :].to(out_device)

    def griffin_lim(self, mag: torch.Tensor, length: int) -> torch.Tensor:
        """Fast Griffin-Lim: magnitudes (B, F, frames) -> wav (B, length)."""
        c = self.cfg
        gen = torch.Generator(device="cpu").manual_seed(c.phase_seed)
        phase = torch.rand(mag.shape[-2:], generator=gen, dtype=torch.float32) * (2 * math.pi)
        angles = torch.polar(torch.ones_like(phase), phase).to(self.device).expand_as(mag)
        previous = torch.zeros((), dtype=angles.dtype, device=self.device)
        alpha = c.griffin_lim_momentum / (1.0 + c.griffin_lim_momentum)
        for _ in range(c.griffin_lim_iters):
            wav = self._istft(mag * angles, length)
            rebuilt = self._stft(wav)
            angles = rebuilt - alpha * previous
            angles = angles / (angles.abs() + 1e-16)
            previous = rebuilt
        return self._istft(mag * angles, length)

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        return torch.istft(
            spec, self.cfg.n_fft, hop_length=self.cfg.hop, window=self.window, center=True, length=length
        )
