"""Weight-free audio descriptors: timbre, register, loudness, rhythm/tempo and mode of one mono clip.

Chosen to capture what distinguishes the synthetic tags (``model/datasets/music_styles.py``): genres differ
by tempo, drum pattern and swing (onset-envelope autocorrelation at log-spaced lags, per band: full, low
for kicks/bass, high for hats); instruments by spectrum, envelope and pan (log-mel profile, spectral
shape, stereo width); moods by mode, register, note density, brightness and loudness (key-normalised
chroma and major/minor template fit, log-mel profile, spectral flux, centroid, RMS).

``clip_descriptor(mono (N,), stereo_width, sr) -> (D,)`` float64; ``DESCRIPTOR_NAMES`` lists the D names.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from model.audio.mel import hz_to_mel_slaney, mel_filterbank

SAMPLE_RATE = 22050
N_FFT = 1024
HOP = 512
N_MELS = 32
N_LAGS_FULL = 16
N_LAGS_BAND = 8
LAG_RANGE_S = (0.09, 1.6)  # 37-660 BPM periodicities: sixteenth hats up to one slow beat
LOW_BAND_HZ = 200.0
HIGH_BAND_HZ = 5000.0
TOP_DB = 60.0

# Krumhansl-Kessler key profiles, tonic first.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _names() -> tuple[str, ...]:
    names = [f"logmel_mean_{i}" for i in range(N_MELS)] + [f"logmel_std_{i}" for i in range(N_MELS)]
    for stat in ("centroid", "bandwidth", "rolloff", "flatness", "flux"):
        names += [f"{stat}_mean", f"{stat}_std"]
    names += ["rms_db_mean", "rms_db_std", "rms_db_max", "stereo_width"]
    names += [f"onset_ac_full_{i}" for i in range(N_LAGS_FULL)]
    names += [f"onset_ac_low_{i}" for i in range(N_LAGS_BAND)] + [
        f"onset_ac_high_{i}" for i in range(N_LAGS_BAND)
    ]
    names += [f"chroma_keynorm_{i}" for i in range(12)] + ["major_fit", "minor_fit", "major_minus_minor"]
    return tuple(names)


DESCRIPTOR_NAMES = _names()
DIM = len(DESCRIPTOR_NAMES)

# Inputs of the offline judge and local-clap: the descriptor minus what a codec changes without changing the
# music: stereo width (the mel codec is mono), spectral flux (Griffin-Lim frame flicker) and chroma/mode fit
# (mel inversion smears pitch). Measured on mel-codec round trips of renders that follow their prompts:
# dropping them raised the tagger's CCS margin from 0.35 to 0.48 (0.51 before the codec).
_CODEC_SENSITIVE = ("stereo_width", "flux_", "chroma_", "major_fit", "minor_fit", "major_minus_minor")
JUDGE_FEATURES = tuple(i for i, n in enumerate(DESCRIPTOR_NAMES) if not n.startswith(_CODEC_SENSITIVE))


def judge_features(descriptors: np.ndarray) -> np.ndarray:
    """(B, DIM) descriptors -> (B, len(JUDGE_FEATURES)) codec-robust columns for the trained offline models."""
    return np.asarray(descriptors)[:, JUDGE_FEATURES]


@lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(N_FFT)


@lru_cache(maxsize=4)
def _mel_fb(sr: int) -> torch.Tensor:
    return mel_filterbank(sr, N_FFT, N_MELS, f_min=30.0, f_max=sr / 2, dtype=torch.float32)


@lru_cache(maxsize=4)
def _chroma_fb(sr: int) -> torch.Tensor:
    """(12, F) soft assignment of FFT bins between 55 Hz and 5 kHz to pitch classes (A = 0)."""
    freqs = np.linspace(0, sr / 2, N_FFT // 2 + 1)
    fb = np.zeros((12, freqs.size))
    valid = (freqs >= 55.0) & (freqs <= 5000.0)
    semis = 12.0 * np.log2(freqs[valid] / 440.0)
    for pc in range(12):
        dist = np.abs(((semis - pc + 6.0) % 12.0) - 6.0)
        fb[pc, valid] = np.exp(-0.5 * (dist / 0.5) ** 2)
    return torch.from_numpy(fb.astype(np.float32))


def _lag_bin_edges(n: int, fps: float) -> np.ndarray:
    """n + 1 log-spaced lag edges (in frames) spanning LAG_RANGE_S."""
    lo, hi = LAG_RANGE_S
    return np.exp(np.linspace(math.log(lo), math.log(hi), n + 1)) * fps


def _autocorr_bins(envelope: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Peak normalised autocorrelation of a mean-removed envelope within each lag bin [e_i, e_i+1).

    The max over a bin (not the value at one lag) keeps a beat's peak wherever it falls, so a sharp and a
    smeared rendering of the same rhythm give the same feature.
    """
    x = envelope - envelope.mean()
    energy = float(x @ x)
    n_bins = edges.size - 1
    if energy <= 1e-12:
        return np.zeros(n_bins)
    n = x.size
    spec = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n] / energy
    out = np.zeros(n_bins)
    for i in range(n_bins):
        lo, hi = int(np.floor(edges[i])), int(np.ceil(edges[i + 1]))
        out[i] = ac[max(lo, 1) : min(max(hi, lo + 1), n)].max(initial=0.0)
    return out


_SMOOTH = np.exp(-0.5 * (np.arange(-3, 4) / 1.5) ** 2)
_SMOOTH /= _SMOOTH.sum()


def _onset_envelope(logmel: np.ndarray) -> np.ndarray:
    """Half-wave rectified frame difference summed over bands, lightly smoothed: (M, T) -> (T,)."""
    diff = np.diff(logmel, axis=1, prepend=logmel[:, :1])
    return np.convolve(np.maximum(diff, 0.0).sum(axis=0), _SMOOTH, mode="same")


def _template_fit(profile: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``chroma`` (12,) with the 12 rotations of a key profile -> (12,)."""
    rotations = np.stack([np.roll(profile, k) for k in range(12)])
    rz = (rotations - rotations.mean(axis=1, keepdims=True)) / rotations.std(axis=1, keepdims=True)
    spread = chroma.std()
    if spread <= 1e-12:
        return np.zeros(12)
    return rz @ ((chroma - chroma.mean()) / spread) / 12.0


def clip_descriptor(mono: np.ndarray, stereo_width: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Descriptor of a mono clip (N,) at ``sr`` -> (DIM,) float64."""
    wav = torch.from_numpy(np.asarray(mono, np.float32))
    spec = torch.stft(wav, N_FFT, hop_length=HOP, window=_window(), center=True, return_complex=True)
    power_t = torch.view_as_real(spec).pow(2).sum(-1)  # (F, T)
    mel = (_mel_fb(sr) @ power_t).numpy()
    # floor 60 dB below the clip's peak: reverb tails and noise at -100 dB must not drive onsets or flux
    logmel = np.log10(np.maximum(mel, mel.max() * 10 ** (-TOP_DB / 10)) + 1e-12)
    chroma = (_chroma_fb(sr) @ power_t).numpy().mean(axis=1).astype(np.float64)
    power = power_t.numpy()
    freqs = np.linspace(0, sr / 2, power.shape[0], dtype=np.float32)
    fps = sr / HOP

    mag = np.sqrt(power) + 1e-6
    total = mag.sum(axis=0)
    centroid = (freqs @ mag) / total
    bandwidth = np.sqrt(np.maximum((freqs**2) @ mag / total - centroid**2, 0.0))
    rolloff = freqs[np.argmax(np.cumsum(mag, axis=0) >= 0.85 * total, axis=0)]
    log_mag = np.log(mag)
    flatness = np.exp(log_mag.mean(axis=0)) / mag.mean(axis=0)
    flux = np.r_[0.0, np.sqrt((np.diff(logmel, axis=1) ** 2).mean(axis=0))]
    khz = 1.0 / 1000.0
    spectral = []
    for series in (centroid * khz, bandwidth * khz, rolloff * khz, flatness, flux):
        spectral += [float(series.mean()), float(series.std())]

    rms_db = 10.0 * np.log10(power.sum(axis=0) / (N_FFT / 2) + 1e-10)
    loudness = [rms_db.mean() / 20.0, rms_db.std() / 20.0, rms_db.max() / 20.0, stereo_width]

    mel_centres = np.linspace(0, 1, N_MELS)
    low_bands = mel_centres <= _mel_position(LOW_BAND_HZ, sr)
    high_bands = mel_centres >= _mel_position(HIGH_BAND_HZ, sr)
    env_full = _onset_envelope(logmel)
    env_low = _onset_envelope(logmel[low_bands]) if low_bands.any() else np.zeros_like(env_full)
    env_high = _onset_envelope(logmel[high_bands]) if high_bands.any() else np.zeros_like(env_full)
    rhythm = np.concatenate(
        [
            _autocorr_bins(env_full, _lag_bin_edges(N_LAGS_FULL, fps)),
            _autocorr_bins(env_low, _lag_bin_edges(N_LAGS_BAND, fps)),
            _autocorr_bins(env_high, _lag_bin_edges(N_LAGS_BAND, fps)),
        ]
    )

    chroma = chroma / (chroma.sum() + 1e-12)
    major_fit, minor_fit = _template_fit(_MAJOR_PROFILE, chroma), _template_fit(_MINOR_PROFILE, chroma)
    tonic = int(np.argmax(np.maximum(major_fit, minor_fit)))
    tonal = np.concatenate(
        [
            np.roll(chroma, -tonic) * 12.0,
            [major_fit.max(), minor_fit.max(), major_fit.max() - minor_fit.max()],
        ]
    )

    out = np.concatenate([logmel.mean(axis=1), logmel.std(axis=1), spectral, loudness, rhythm, tonal])
    return np.nan_to_num(out.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


@lru_cache(maxsize=8)
def _mel_position(freq_hz: float, sr: int) -> float:
    """Where ``freq_hz`` falls on the normalised (0..1) mel axis of the filterbank."""
    lo = hz_to_mel_slaney(torch.tensor(30.0, dtype=torch.float64)).item()
    hi = hz_to_mel_slaney(torch.tensor(sr / 2, dtype=torch.float64)).item()
    at = hz_to_mel_slaney(torch.tensor(freq_hz, dtype=torch.float64)).item()
    return (at - lo) / (hi - lo)


def stereo_width(audio: np.ndarray) -> float:
    """Side-to-mid RMS ratio of (C, N) audio; 0 for mono."""
    if audio.shape[0] < 2:
        return 0.0
    mid = (audio[0] + audio[1]) / 2.0
    side = (audio[0] - audio[1]) / 2.0
    return float(np.sqrt((side**2).mean()) / (np.sqrt((mid**2).mean()) + 1e-8))
