"""ACE-Step's log-mel front end (``music_log_mel.py``), in plain PyTorch with the same buffer names.

The vocoder checkpoint stores this module's buffers as ``mel_transform.spectrogram.window`` (Hann, win_length)
and ``mel_transform.mel_scale.fb`` (n_fft // 2 + 1, n_mels), so the submodule names here are fixed.

Per channel: reflect-pad by ((win - hop) // 2, (win - hop + 1) // 2), STFT without centring, magnitude
``sqrt(re² + im² + 1e-6)``, Slaney mel (Slaney norm), ``log(max(mel, 1e-5))``. For N a multiple of ``hop``
this gives exactly N / hop frames.
"""

from __future__ import annotations

import torch
from torch import nn

from model.audio.mel import mel_filterbank

LOG_FLOOR = 1e-5
MAGNITUDE_EPS = 1e-6


class LinearSpectrogram(nn.Module):
    """|STFT| of (B, N) -> (B, n_fft // 2 + 1, frames), ACE-Step's padding and magnitude."""

    def __init__(self, n_fft: int = 2048, win_length: int = 2048, hop_length: int = 512):
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        pad = ((self.win_length - self.hop_length) // 2, (self.win_length - self.hop_length + 1) // 2)
        y = nn.functional.pad(y.unsqueeze(1), pad, mode="reflect").squeeze(1)
        spec = torch.stft(
            y.float(),
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.float(),
            center=False,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        spec = torch.view_as_real(spec)
        return torch.sqrt(spec.pow(2).sum(-1) + MAGNITUDE_EPS)


class MelScale(nn.Module):
    """Linear spectrogram (B, F, frames) -> mel (B, n_mels, frames) with ``fb`` of shape (F, n_mels)."""

    def __init__(self, n_mels: int, sample_rate: int, f_min: float, f_max: float, n_fft: int):
        super().__init__()
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, norm="slaney").T.contiguous()
        self.register_buffer("fb", fb)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.matmul(spec.transpose(-1, -2), self.fb.to(spec.dtype)).transpose(-1, -2)


class LogMelSpectrogram(nn.Module):
    """Waveform (..., N) -> log-mel (..., n_mels, frames); every leading dim is a separate signal."""

    def __init__(
        self,
        sample_rate: int = 44100,
        n_fft: int = 2048,
        win_length: int = 2048,
        hop_length: int = 512,
        n_mels: int = 128,
        f_min: float = 0.0,
        f_max: float | None = None,
    ):
        super().__init__()
        f_max = f_max or sample_rate // 2
        self.hop_length = hop_length
        self.spectrogram = LinearSpectrogram(n_fft, win_length, hop_length)
        self.mel_scale = MelScale(n_mels, sample_rate, f_min, f_max, n_fft)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        lead = wav.shape[:-1]
        linear = self.spectrogram(wav.reshape(-1, wav.shape[-1]))
        mel = torch.log(torch.clamp(self.mel_scale(linear), min=LOG_FLOOR))
        return mel.reshape(*lead, *mel.shape[-2:])
