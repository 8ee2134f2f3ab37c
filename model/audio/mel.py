"""Mel filterbanks and log-mel spectrograms in plain PyTorch (no torchaudio: its wheels need CUDA here)."""

from __future__ import annotations

import math

import torch


def hz_to_mel_slaney(freq: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (as librosa's ``htk=False``)."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    mel = freq / f_sp
    log_region = freq >= min_log_hz
    return torch.where(log_region, min_log_mel + torch.log(freq.clamp_min(1e-10) / min_log_hz) / logstep, mel)


def mel_to_hz_slaney(mel: torch.Tensor) -> torch.Tensor:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    freq = mel * f_sp
    return torch.where(mel >= min_log_mel, min_log_hz * torch.exp(logstep * (mel - min_log_mel)), freq)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    norm: str | None = "slaney",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Triangular Slaney-scale mel filterbank, shape (n_mels, n_fft // 2 + 1).

    With ``norm="slaney"`` each triangle is scaled to constant energy per band (librosa's default).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    n_freqs = n_fft // 2 + 1
    fft_freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    mel_pts = torch.linspace(
        hz_to_mel_slaney(torch.tensor(f_min, dtype=torch.float64)).item(),
        hz_to_mel_slaney(torch.tensor(f_max, dtype=torch.float64)).item(),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz_pts = mel_to_hz_slaney(mel_pts)
    fdiff = hz_pts[1:] - hz_pts[:-1]
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    fb = torch.clamp(torch.minimum(lower, upper), min=0.0)
    if norm == "slaney":
        enorm = 2.0 / (hz_pts[2 : n_mels + 2] - hz_pts[:n_mels])
        fb = fb * enorm[:, None]
    return fb.to(dtype)


def stft_magnitude(
    wav: torch.Tensor,
    n_fft: int,
    hop: int,
    win_length: int | None = None,
    center: bool = True,
    power: float = 1.0,
) -> torch.Tensor:
    """|STFT|**power of ``wav`` (..., N) with a Hann window -> (..., n_fft // 2 + 1, frames)."""
    win_length = win_length or n_fft
    shape = wav.shape
    flat = wav.reshape(-1, shape[-1])
    window = torch.hann_window(win_length, dtype=wav.dtype, device=wav.device)
    spec = torch.stft(
        flat, n_fft, hop_length=hop, win_length=win_length, window=window, center=center, return_complex=True
    )
    mag = spec.abs()
    if power != 1.0:
        mag = mag.pow(power)
    return mag.reshape(*shape[:-1], *mag.shape[-2:])
