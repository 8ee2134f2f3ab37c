"""Instrument timbres and drum sounds for the synthetic dataset, vectorised numpy.

Pitched notes are band-limited wavetables (harmonics up to 19 kHz) read at the note's phase: an "attack"
table that fades fast over a "body" table, so piano and guitar get a bright onset and a mellow tail. The
timbres differ where a 64-bin log-mel sees it: bass (low, few harmonics), piano (decaying, 1/k^a),
guitar (plucked: comb-notched harmonics, strummed, overdriven on its bus), strings (sawtooth ensemble with bow hiss, slow
attack, vibrato), synthesizer (square wave: odd harmonics, sustained), drums (noise and pitch sweeps).
"""

from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 44100
TABLE_SIZE = 4096
_MAX_HARMONIC_HZ = 19000.0
_MAX_HARMONICS = 32
# sin(2 pi k x) for k = 1.._MAX_HARMONICS over one cycle: a table is one matrix-vector product
_SIN_BASIS = np.sin(
    2 * np.pi * np.outer(np.arange(1, _MAX_HARMONICS + 1), np.arange(TABLE_SIZE) / TABLE_SIZE)
)


def midi_to_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def wavetable(amplitudes: np.ndarray, f0: float) -> np.ndarray:
    """One cycle with harmonic k (1-based) at ``amplitudes[k-1]``, cut at 19 kHz: float32 (TABLE_SIZE,), peak 1."""
    k_max = max(1, min(len(amplitudes), _MAX_HARMONICS, int(_MAX_HARMONIC_HZ // f0)))
    table = amplitudes[:k_max] @ _SIN_BASIS[:k_max]
    return (table / max(np.abs(table).max(), 1e-9)).astype(np.float32)


def _harmonics(n: int, rolloff: float, odd_only: bool = False, pluck: float | None = None) -> np.ndarray:
    k = np.arange(1, n + 1, dtype=np.float64)
    amps = k ** (-rolloff)
    if odd_only:
        amps[1::2] = 0.0
    if pluck is not None:  # plucking at a fraction of the string removes every 1/pluck-th harmonic
        amps *= np.abs(np.sin(np.pi * k * pluck)) + 0.02
    return amps


@functools.lru_cache(maxsize=4)
def _sample_index(n: int) -> np.ndarray:
    """0, 1, ..., n-1 as float64 (cached: every note slices it)."""
    return np.arange(n, dtype=np.float64)


def _counter(n: int) -> np.ndarray:
    size = 1 << max(20, (n - 1).bit_length())
    return _sample_index(size)[:n]


@functools.lru_cache(maxsize=2)
def _vibrato_drift(n: int) -> np.ndarray:
    """Cumulative phase (in samples) of a 5.5 Hz, 0.25 % vibrato that fades in over 0.4 s."""
    t = np.arange(n) / SAMPLE_RATE
    return np.cumsum(1.0 + 0.0025 * np.sin(2 * np.pi * 5.5 * t) * np.minimum(t / 0.4, 1.0))


def _read(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Table lookup at ``phase`` in cycles (float64, any magnitude) -> float32 samples."""
    idx = (phase * TABLE_SIZE).astype(np.int64)
    idx &= TABLE_SIZE - 1
    return np.take(table, idx)


def _decay(n: int, tau: float) -> np.ndarray:
    """exp(-t / tau) as float32, only as long as it is audible (8 tau) and at most n samples."""
    m = min(n, int(8 * tau * SAMPLE_RATE) + 1)
    return np.exp(_counter(m).astype(np.float32) * np.float32(-1.0 / (tau * SAMPLE_RATE)))


def _apply_attack(sig: np.ndarray, seconds: float, power: float = 1.0) -> None:
    m = min(len(sig), max(1, int(seconds * SAMPLE_RATE)))
    ramp = np.linspace(0.0, 1.0, m, endpoint=False, dtype=np.float32)
    sig[:m] *= ramp**power if power != 1.0 else ramp


def _add_decaying(sig: np.ndarray, table: np.ndarray, phase: np.ndarray, tau: float, gain: float) -> None:
    dec = _decay(len(sig), tau)
    sig[: len(dec)] += gain * _read(table, phase[: len(dec)]) * dec


def render_note(
    instrument: str,
    midi: float,
    duration: float,
    velocity: float,
    rolloff: float,
    attack_scale: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Mono float32 samples of one note: the held part plus its release. Shape (N,)."""
    f0 = midi_to_hz(midi)
    sr = SAMPLE_RATE
    release = {"piano": 0.12, "guitar": 0.08, "bass": 0.05, "strings": 0.35, "synthesizer": 0.06}[instrument]
    n_hold = int(duration * sr)
    n = n_hold + int(release * sr)
    phase = rng.random() + (f0 / sr) * _counter(n)
    sig = np.zeros(n, dtype=np.float32)
    if instrument == "piano":
        tau = float(np.clip(1.1 * (261.6 / f0) ** 0.5, 0.3, 2.5))
        _add_decaying(sig, wavetable(_harmonics(14, rolloff + 0.8), f0), phase, tau, 1.0)
        _add_decaying(sig, wavetable(_harmonics(24, rolloff * 0.7), f0), phase, 0.07, 0.8)
        _apply_attack(sig, 0.003)
    elif instrument == "guitar":
        _add_decaying(sig, wavetable(_harmonics(28, rolloff * 0.6, pluck=0.18), f0), phase, 0.05, 1.0)
        _add_decaying(sig, wavetable(_harmonics(12, rolloff + 0.6, pluck=0.18), f0), phase, 1.2, 0.7)
        _apply_attack(sig, 0.002)
    elif instrument == "bass":
        amps = np.array([1.0, 0.55, 0.3, 0.15, 0.07, 0.03]) * (np.arange(1, 7) ** -(rolloff * 0.3))
        body = wavetable(amps, f0)
        sig += 0.6 * _read(body, phase)
        _add_decaying(sig, body, phase, 0.2, 0.4)
        _add_decaying(sig, wavetable(_harmonics(10, 1.0), f0), phase, 0.03, 0.3)
        _apply_attack(sig, 0.005)
    elif instrument == "strings":
        table = wavetable(_harmonics(32, 0.8 + 0.6 * rolloff), f0)
        drift = _vibrato_drift(1 << max(20, (n - 1).bit_length()))[:n] * (f0 / sr)
        for cents in (-7.0, 0.0, 7.0):  # a small ensemble: detuned voices beat against each other
            sig += _read(table, rng.random() + drift * 2.0 ** (cents / 1200.0)) / 3.0
        hiss = np.diff(rng.standard_normal(n + 2).astype(np.float32))  # bow noise, high-passed ...
        sig += 0.1 * (hiss[1:] + hiss[:-1])  # ... and gently low-passed: a sustained 2-10 kHz hiss
        _apply_attack(sig, 0.35 * attack_scale, power=2.0)
    elif instrument == "synthesizer":
        table = wavetable(_harmonics(31, 0.3 + 0.7 * rolloff, odd_only=True), f0)
        sig += 0.4 * (_read(table, phase) + _read(table, rng.random() + phase * 1.006))
        _add_decaying(sig, table, phase, 0.1, 0.2)
        _apply_attack(sig, 0.008 * attack_scale)
    else:
        raise ValueError(f"no timbre for instrument {instrument!r}")
    if n > n_hold:
        sig[n_hold:] *= np.linspace(1.0, 0.0, n - n_hold, dtype=np.float32)
    return sig * np.float32(velocity)


def _highpass_noise(n: int, rng: np.random.Generator, order: int) -> np.ndarray:
    x = rng.standard_normal(n + order)
    for _ in range(order):
        x = np.diff(x)
    return x / (np.abs(x).max() + 1e-9)


def render_drum(kind: str, midi: float, rng: np.random.Generator) -> np.ndarray:
    """Mono samples of one drum hit at unit velocity. Shape (N,)."""
    sr = SAMPLE_RATE
    if kind == "kick":
        t = np.arange(int(0.35 * sr)) / sr
        freq_phase = 50.0 * t + 90.0 * 0.04 * (1.0 - np.exp(-t / 0.04))
        sig = np.sin(2 * np.pi * freq_phase) * np.exp(-t / 0.16)
        sig[: int(0.002 * sr)] += 0.5 * rng.standard_normal(int(0.002 * sr))
    elif kind == "snare":
        t = np.arange(int(0.25 * sr)) / sr
        sig = 0.8 * _highpass_noise(len(t), rng, 1) * np.exp(-t / 0.09)
        sig += 0.5 * np.sin(2 * np.pi * 190.0 * t) * np.exp(-t / 0.05)
    elif kind in ("hat", "open_hat"):
        t = np.arange(int((0.06 if kind == "hat" else 0.3) * sr)) / sr
        sig = _highpass_noise(len(t), rng, 2) * np.exp(-t / (0.018 if kind == "hat" else 0.12))
    elif kind == "ride":
        t = np.arange(int(0.9 * sr)) / sr
        partials = np.array([3150.0, 4120.0, 5330.0, 6710.0, 7950.0, 9820.0])
        sig = np.sign(np.sin(2 * np.pi * np.outer(t, partials) + rng.random(6) * 6.28)).sum(axis=1) / 6.0
        sig = 0.5 * sig + 0.4 * _highpass_noise(len(t), rng, 2)
        sig *= np.exp(-t / 0.45)
    elif kind == "timpani":
        t = np.arange(int(1.2 * sr)) / sr
        f0 = midi_to_hz(midi)
        sig = sum(a * np.sin(2 * np.pi * f0 * r * t) for a, r in ((1.0, 1.0), (0.5, 1.5), (0.3, 1.99)))
        sig = sig * np.exp(-t / 0.6) + 0.4 * rng.standard_normal(len(t)) * np.exp(-t / 0.01)
    elif kind == "swell":
        n = int(1.6 * sr)
        t = np.arange(n) / sr
        noise = rng.standard_normal(n + 64)
        band = (
            np.convolve(noise, np.ones(6) / 6, "valid")[:n]
            - np.convolve(noise, np.ones(64) / 64, "valid")[:n]
        )
        sig = band * np.sin(np.pi * t / t[-1]) ** 2
    else:
        raise ValueError(f"no drum sound {kind!r}")
    return sig / (np.abs(sig).max() + 1e-9)
