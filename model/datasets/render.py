"""Render a composed Score to 44.1 kHz stereo: voices, panning, side-chain pump, drive, room, loudness."""

from __future__ import annotations

import numpy as np
import scipy.fft

from model.datasets.music_styles import INSTRUMENTS
from model.datasets.score import Score
from model.datasets.voices import SAMPLE_RATE, render_drum, render_note

_TARGET_RMS = 0.2  # times the mood's gain: energetic -14 dBFS ... calm -23 dBFS
_PEAK = 0.97
_EDGE_FADE_S = 0.01


def _add(buffer: np.ndarray, start_s: float, signal: np.ndarray) -> None:
    start = int(round(start_s * SAMPLE_RATE))
    if start >= len(buffer):
        return
    end = min(len(buffer), start + len(signal))
    buffer[start:end] += signal[: end - start]


def _pan_gains(pan: float) -> tuple[float, float]:
    angle = (pan + 1.0) * np.pi / 4.0  # constant-power pan law
    return float(np.cos(angle)), float(np.sin(angle))


def _pump_envelope(kick_times: list[float], depth: float, n: int) -> np.ndarray:
    """Gain that dips by ``depth`` on each kick step and recovers in ~120 ms (electronic side-chain)."""
    if depth <= 0 or not kick_times:
        return np.ones(n, dtype=np.float32)
    t = np.arange(n) / SAMPLE_RATE
    kicks = np.asarray(sorted(kick_times))
    last = np.searchsorted(kicks, t, side="right") - 1
    since = np.where(last >= 0, t - kicks[np.clip(last, 0, None)], np.inf)
    return (1.0 - depth * np.exp(-since / 0.12)).astype(np.float32)


def _room(stereo: np.ndarray, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Add a decorrelated exponentially decaying noise reverb; longer for wetter genres."""
    if wet <= 0:
        return stereo
    tau = 0.15 + 1.4 * wet
    n_ir = int(min(3.0 * tau, 2.5) * SAMPLE_RATE)
    t = np.arange(n_ir) / SAMPLE_RATE
    ir = rng.standard_normal((stereo.shape[0], n_ir)) * np.exp(-t / tau)  # one IR per channel: decorrelated
    ir[:, : int(0.015 * SAMPLE_RATE)] = 0.0  # pre-delay
    ir /= np.sqrt(np.sum(ir**2, axis=1, keepdims=True))
    n_fft = scipy.fft.next_fast_len(stereo.shape[1] + n_ir - 1, real=True)
    spectrum = scipy.fft.rfft(stereo, n_fft, axis=-1) * scipy.fft.rfft(ir.astype(np.float32), n_fft, axis=-1)
    wet_signal = scipy.fft.irfft(spectrum, n_fft, axis=-1)[:, : stereo.shape[1]]
    return stereo + np.float32(wet) * wet_signal


def render(score: Score, rng: np.random.Generator) -> np.ndarray:
    """Audio of ``score``: float32 (2, round(seconds * 44100)), RMS set by the mood, peak <= 0.97."""
    n = int(round(score.seconds * SAMPLE_RATE))
    tonal = np.zeros((2, n), dtype=np.float32)
    drums = np.zeros(n, dtype=np.float32)
    g, m = score.genre, score.mood
    by_instrument: dict[str, np.ndarray] = {}
    for note in score.notes:
        if note.instrument not in by_instrument:
            by_instrument[note.instrument] = np.zeros(n, dtype=np.float32)
        buf = by_instrument[note.instrument]
        attack_scale = g.attack_scale * m.attack_scale
        _add(
            buf,
            note.start,
            render_note(
                note.instrument, note.midi, note.duration, note.velocity, m.rolloff, attack_scale, rng
            ),
        )
    for name, buf in sorted(by_instrument.items()):
        role = INSTRUMENTS[name]
        if role.drive > 0:
            buf = np.tanh(np.float32(role.drive) * buf)
        left, right = _pan_gains(role.pan)
        tonal[0] += role.level * left * buf
        tonal[1] += role.level * right * buf
    sounds: dict[tuple[str, float], np.ndarray] = {}
    for hit in score.hits:
        key = (hit.kind, hit.midi)
        if key not in sounds:
            sounds[key] = render_drum(hit.kind, hit.midi, rng).astype(np.float32)
        _add(drums, hit.start, hit.velocity * sounds[key])
    tonal *= _pump_envelope(list(score.pulse), g.pump, n)
    mix = tonal + INSTRUMENTS["drums"].level * drums[None, :]
    if m.drive > 0:
        mix = np.tanh(np.float32(m.drive) * mix) / np.float32(np.tanh(m.drive))
    mix = _room(mix, g.reverb, rng)
    # loudness is a mood cue, not an instrument-count one: normalise RMS to the mood's level
    mix *= np.float32(_TARGET_RMS * m.gain / max(float(np.sqrt(np.mean(mix**2))), 1e-9))
    n_fade = int(_EDGE_FADE_S * SAMPLE_RATE)
    ramp = np.linspace(0.0, 1.0, n_fade, dtype=np.float32)
    mix[:, :n_fade] *= ramp
    mix[:, n - n_fade :] *= ramp[::-1]
    peak = np.abs(mix).max()
    if peak > _PEAK:
        mix *= _PEAK / peak
    return mix.astype(np.float32)
