"""Compose the notes of a synthetic track from its tags: chords, bass line, comping, pad, melody, drums.

Everything random comes from the ``numpy.random.Generator`` passed in, so a track is a pure function of
its tags and its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.datasets.music_styles import (
    GENRES,
    INSTRUMENTS,
    JAZZ_PROGRESSIONS,
    MAJOR_PROGRESSIONS,
    MAJOR_SCALE,
    MINOR_PROGRESSIONS,
    MINOR_SCALE,
    MOODS,
    STEPS_PER_BAR,
    GenreStyle,
    MoodStyle,
)


@dataclass(frozen=True)
class NoteEvent:
    instrument: str
    start: float  # seconds
    duration: float  # seconds the key is held (the release comes after)
    midi: float
    velocity: float


@dataclass(frozen=True)
class DrumHit:
    kind: str  # kick, snare, hat, open_hat, ride, timpani, swell
    start: float
    velocity: float
    midi: float = 0.0  # pitch of a timpani hit


@dataclass(frozen=True)
class Score:
    genre: GenreStyle
    mood: MoodStyle
    bpm: float
    seconds: float
    notes: tuple[NoteEvent, ...]
    hits: tuple[DrumHit, ...]
    pulse: tuple[float, ...]  # kick-pattern times, also without drums (side-chain pump of electronic)


class _Grid:
    """Times of sixteenth steps under the genre's tempo and swing."""

    def __init__(self, bpm: float, swing: float):
        self.sixteenth = 60.0 / bpm / 4.0
        self.swing = swing

    def time(self, bar: int, step: int) -> float:
        t = (bar * STEPS_PER_BAR + step) * self.sixteenth
        if step % 4 == 2:
            t += self.swing * self.sixteenth
        return t


def degree_to_semitone(degree: int, scale: tuple[int, ...]) -> int:
    return scale[degree % 7] + 12 * (degree // 7)


def compose(
    genre: str, instruments: tuple[str, ...], mood: str, seconds: float, rng: np.random.Generator
) -> Score:
    """Notes and drum hits for ``seconds`` of music. Tags are Jamendo tag names (see music_styles)."""
    g, m = GENRES[genre], MOODS[mood]
    bpm = g.bpm * (1.0 + rng.uniform(-0.03, 0.03))
    grid = _Grid(bpm, g.swing)
    bar_seconds = 16 * grid.sixteenth
    n_bars = int(np.ceil(seconds / bar_seconds)) + 1
    scale = MINOR_SCALE if m.minor else MAJOR_SCALE
    key = int(rng.integers(-3, 4))
    pool = (
        JAZZ_PROGRESSIONS
        if g.sevenths and genre == "jazz"
        else (MINOR_PROGRESSIONS if m.minor else MAJOR_PROGRESSIONS)
    )
    progression = pool[int(rng.integers(len(pool)))]
    chords = [progression[(bar // g.bars_per_chord) % len(progression)] for bar in range(n_bars)]

    notes: list[NoteEvent] = []
    for name in instruments:
        if name == "drums":
            continue
        role = INSTRUMENTS[name]
        shift = m.register_shift // 2 if role.role == "bass" else m.register_shift
        base = role.centre_midi + shift + key
        part = _PARTS[role.role](g, m, grid, chords, scale, base, n_bars, rng)
        notes += [NoteEvent(name, s, d, p, v) for s, d, p, v in part if s < seconds]
    hits = _drums(g, m, grid, chords, scale, 45 + key, n_bars, rng) if "drums" in instruments else []
    pulse = tuple(t for bar in range(n_bars) for s in g.kick if (t := grid.time(bar, s)) < seconds)
    return Score(g, m, bpm, seconds, tuple(notes), tuple(h for h in hits if h.start < seconds), pulse)


def _chord_pitches(degree: int, scale, base: int, sevenths: bool) -> list[int]:
    tones = [degree, degree + 2, degree + 4] + ([degree + 6] if sevenths else [])
    pitches = [base + degree_to_semitone(t, scale) for t in tones]
    # close voicing folded into an octave around base, so register stays the instrument's and the mood's
    return sorted(p - 12 * round((p - base - 4) / 12) for p in pitches)


def _onsets(steps: tuple[int, ...], grid_step: int) -> list[int]:
    kept = [s for s in steps if s % grid_step == 0]
    return kept or list(steps[:1])


def _velocity(step: int, base: float, rng) -> float:
    accent = 1.0 if step == 0 else (0.85 if step % 4 == 0 else 0.7)
    return float(base * accent * rng.uniform(0.9, 1.0))


def _timed(grid: _Grid, n_bars: int, steps: list[int], articulation: float):
    """(bar, step, start, duration) for every onset, duration = articulation x gap to the next onset."""
    times = [(bar, s, grid.time(bar, s)) for bar in range(n_bars) for s in steps]
    out = []
    for i, (bar, s, t) in enumerate(times):
        nxt = times[i + 1][2] if i + 1 < len(times) else t + grid.sixteenth * 4
        out.append((bar, s, t, max(0.05, (nxt - t) * articulation)))
    return out


def _bass(g, m, grid, chords, scale, base, n_bars, rng):
    out = []
    for bar, s, t, dur in _timed(
        grid, n_bars, _onsets(g.bass_steps, min(m.step, 4)), g.articulation * m.articulation
    ):
        root = max(28, base + degree_to_semitone(chords[bar], scale))
        if g.bass_line == "root_fifth" and s >= 8:
            pitch = root + 7
        elif g.bass_line == "walk":
            beat = s // 4
            nxt = max(28, base + degree_to_semitone(chords[min(bar + 1, n_bars - 1)], scale))
            pitch = [root, root + (3 if m.minor else 4), root + 7, nxt + int(rng.choice([-1, 1]))][beat]
        else:
            pitch = root
        out.append((t, dur, pitch, _velocity(s, m.gain, rng)))
    return out


def _comp(g, m, grid, chords, scale, base, n_bars, rng, strum: bool = False):
    out = []
    for i, (bar, s, t, dur) in enumerate(
        _timed(grid, n_bars, _onsets(g.comp_steps, m.step), g.articulation * m.articulation)
    ):
        chord = _chord_pitches(chords[bar], scale, base, g.sevenths)
        vel = _velocity(s, m.gain, rng)
        if g.comp_style == "arp":
            pattern = chord + chord[-2:0:-1]
            out.append((t, dur, pattern[i % len(pattern)], vel))
        elif strum:
            voicing = [*chord, chord[0] + 12]
            out += [(t + 0.012 * j, dur, p, vel * 0.8) for j, p in enumerate(voicing)]
        else:
            out += [(t, dur, p, vel * 0.8) for p in chord]
    return out


def _strum(g, m, grid, chords, scale, base, n_bars, rng):
    return _comp(g, m, grid, chords, scale, base, n_bars, rng, strum=True)


def _pad(g, m, grid, chords, scale, base, n_bars, rng):
    out = []
    steps = _onsets(g.pad_steps, max(m.step, 8))  # long bows: strings stay a sustained texture
    bars = range(0, n_bars, g.bars_per_chord)
    times = [(bar, s, grid.time(bar, s)) for bar in bars for s in steps]
    for i, (bar, _, t) in enumerate(times):
        nxt = times[i + 1][2] if i + 1 < len(times) else t + g.bars_per_chord * 16 * grid.sixteenth
        dur = (nxt - t) * max(g.articulation, 0.9) * m.articulation
        out += [(t, dur, p, m.gain * 0.8) for p in _chord_pitches(chords[bar], scale, base, g.sevenths)]
    return out


def _lead(g, m, grid, chords, scale, base, n_bars, rng):
    step = max(m.step, g.lead_min_step)
    rest_p = 0.05 if m.step <= 2 else 0.15
    degree, out = 0, []
    for bar, s, t, dur in _timed(
        grid, n_bars, list(range(0, 16, step)), min(g.articulation, 0.95) * m.articulation
    ):
        if s == 0:  # a chord tone on the downbeat, near the previous note
            tones = [chords[bar] + k for k in (-7, -5, -3, 0, 2, 4, 7)]
            degree = min(tones, key=lambda d: abs(d - degree))
        else:
            degree += int(rng.choice([-2, -1, -1, 1, 1, 2]))
        degree = int(np.clip(degree, -5, 9))
        if s != 0 and rng.random() < rest_p:
            continue
        out.append((t, dur, base + degree_to_semitone(degree, scale), _velocity(s, m.gain, rng)))
    return out


_PARTS = {"bass": _bass, "comp": _comp, "strum": _strum, "pad": _pad, "lead": _lead}


def _drums(g, m, grid, chords, scale, timpani_base, n_bars, rng) -> list[DrumHit]:
    level = 0.5 + 0.5 * m.gain
    hat_grid = 1 if m.extra_hats else min(m.step, 4) if m.step > 2 else 1
    hits: list[DrumHit] = []

    def add(kind: str, steps, vel: float, pitch_of=None) -> None:
        for bar in range(n_bars):
            for s in steps:
                pitch = pitch_of(bar, s) if pitch_of else 0.0
                hits.append(
                    DrumHit(kind, grid.time(bar, s), float(vel * level * rng.uniform(0.85, 1.0)), pitch)
                )

    if g.kit == "kit":
        add("kick", g.kick, 1.0)
        add("snare", g.snare, 0.9)
        add("hat", [s for s in g.hat if s % hat_grid == 0], 0.45)
        add("open_hat", g.accent, 0.5)
        if m.extra_hats:
            add("hat", [s for s in range(16) if s not in g.hat], 0.3)
    elif g.kit == "ride":
        add("ride", g.accent, 0.6)
        add("hat", g.hat, 0.35)
        add("kick", g.kick, 0.35)
        add("snare", g.snare, 0.3)
    elif g.kit == "timpani":
        add(
            "timpani",
            g.kick,
            0.8,
            pitch_of=lambda bar, s: (
                timpani_base + degree_to_semitone(chords[bar] + (4 if s else 0), scale) % 12
            ),
        )
    else:
        add("kick", g.kick, 0.5)
        add("swell", g.accent, 0.4)
    return hits
