"""What each synthetic tag means musically: genre -> tempo and rhythm, mood -> mode, register, density,
brightness; instrument -> role and register. Tag names are MTG-Jamendo's own.

The signatures are deliberately coarse so that they survive a ~21 frames/s, 64-bin log-mel view:
genres differ by tempo (60-138 BPM), drum pattern, groove and reverb; moods by a register shift of up to
±7 semitones, notes per beat (1/2 to 4), harmonic roll-off and loudness; instruments by register,
envelope and spectrum (see ``model.datasets.voices``).
"""

from __future__ import annotations

from dataclasses import dataclass

STEPS_PER_BAR = 16  # sixteenth-note grid, 4/4


def _steps(*positions: int) -> tuple[int, ...]:
    return tuple(positions)


EIGHTHS = _steps(0, 2, 4, 6, 8, 10, 12, 14)
QUARTERS = _steps(0, 4, 8, 12)
OFFBEATS = _steps(2, 6, 10, 14)
SIXTEENTHS = tuple(range(16))


@dataclass(frozen=True)
class GenreStyle:
    """Tempo, groove and arrangement of a genre. Drum parts are 16-step onset lists per bar."""

    name: str
    bpm: float
    swing: float  # delay of off-beat eighths, as a fraction of a sixteenth (0 straight, 0.67 triplet feel)
    kit: str  # "kit" (kick/snare/hats), "ride" (jazz: ride cymbal), "timpani", "soft"
    kick: tuple[int, ...]
    snare: tuple[int, ...]
    hat: tuple[int, ...]
    accent: tuple[int, ...]  # open hat (kit), ride (ride), shaker swell (soft)
    bass_steps: tuple[int, ...]
    bass_line: str  # "root", "walk" (chord tones on quarters), "root_fifth"
    comp_steps: tuple[int, ...]
    comp_style: str  # "block" chords or "arp" (arpeggio across the chord)
    pad_steps: tuple[int, ...]  # where sustained parts (strings) re-bow the chord
    lead_min_step: int  # the lead never plays faster than this many sixteenths
    bars_per_chord: int
    articulation: float  # sounding fraction of the gap to the next onset
    attack_scale: float
    sevenths: bool
    reverb: float  # wet level of the room
    pump: float  # side-chain ducking depth on the kick (electronic)


@dataclass(frozen=True)
class MoodStyle:
    name: str
    minor: bool
    register_shift: int  # semitones applied to every pitched part
    step: int  # sixteenths between lead notes; comping keeps only genre steps on this grid
    articulation: float  # multiplies the genre articulation: < 1 staccato, > 1 legato
    gain: float
    rolloff: float  # harmonic amplitude ~ k**-rolloff: low = bright
    drive: float  # tanh saturation amount (0 = clean)
    attack_scale: float
    extra_hats: bool


@dataclass(frozen=True)
class InstrumentRole:
    name: str
    role: str  # "bass", "comp", "pad", "lead", "strum", "drums"
    centre_midi: int
    level: float
    pan: float  # -1 left .. 1 right
    drive: float = 0.0  # tanh overdrive on the instrument's bus (electric guitar)


GENRES: dict[str, GenreStyle] = {
    "ambient": GenreStyle(
        "ambient",
        bpm=60,
        swing=0.0,
        kit="soft",
        kick=_steps(0),
        snare=(),
        hat=(),
        accent=_steps(8),
        bass_steps=_steps(0),
        bass_line="root",
        comp_steps=_steps(0),
        comp_style="block",
        pad_steps=_steps(0),
        lead_min_step=8,
        bars_per_chord=2,
        articulation=1.4,
        attack_scale=5.0,
        sevenths=False,
        reverb=0.55,
        pump=0.0,
    ),
    "classical": GenreStyle(
        "classical",
        bpm=76,
        swing=0.0,
        kit="timpani",
        kick=_steps(0, 8),
        snare=(),
        hat=(),
        accent=(),
        bass_steps=_steps(0, 8),
        bass_line="root_fifth",
        comp_steps=EIGHTHS,
        comp_style="arp",
        pad_steps=_steps(0),
        lead_min_step=2,
        bars_per_chord=1,
        articulation=1.0,
        attack_scale=2.0,
        sevenths=False,
        reverb=0.35,
        pump=0.0,
    ),
    "hiphop": GenreStyle(
        "hiphop",
        bpm=90,
        swing=0.45,
        kit="kit",
        kick=_steps(0, 3, 7, 10),
        snare=_steps(4, 12),
        hat=EIGHTHS,
        accent=(),
        bass_steps=_steps(0, 3, 7, 10),
        bass_line="root",
        comp_steps=_steps(0, 7),
        comp_style="block",
        pad_steps=_steps(0, 10),
        lead_min_step=2,
        bars_per_chord=1,
        articulation=0.6,
        attack_scale=1.0,
        sevenths=True,
        reverb=0.08,
        pump=0.0,
    ),
    "jazz": GenreStyle(
        "jazz",
        bpm=108,
        swing=0.67,
        kit="ride",
        kick=_steps(0, 8),
        snare=_steps(11),
        hat=_steps(4, 12),
        accent=_steps(0, 4, 6, 8, 12, 14),
        bass_steps=QUARTERS,
        bass_line="walk",
        comp_steps=_steps(0, 6),
        comp_style="block",
        pad_steps=_steps(0, 6),
        lead_min_step=2,
        bars_per_chord=1,
        articulation=0.7,
        attack_scale=1.0,
        sevenths=True,
        reverb=0.2,
        pump=0.0,
    ),
    "rock": GenreStyle(
        "rock",
        bpm=122,
        swing=0.0,
        kit="kit",
        kick=_steps(0, 8, 10),
        snare=_steps(4, 12),
        hat=EIGHTHS,
        accent=(),
        bass_steps=EIGHTHS,
        bass_line="root",
        comp_steps=EIGHTHS,
        comp_style="block",
        pad_steps=QUARTERS,
        lead_min_step=2,
        bars_per_chord=1,
        articulation=0.85,
        attack_scale=1.0,
        sevenths=False,
        reverb=0.1,
        pump=0.0,
    ),
    "electronic": GenreStyle(
        "electronic",
        bpm=138,
        swing=0.0,
        kit="kit",
        kick=QUARTERS,
        snare=_steps(4, 12),
        hat=SIXTEENTHS,
        accent=OFFBEATS,
        bass_steps=OFFBEATS,
        bass_line="root",
        comp_steps=SIXTEENTHS,
        comp_style="arp",
        pad_steps=OFFBEATS,
        lead_min_step=1,
        bars_per_chord=1,
        articulation=0.5,
        attack_scale=0.5,
        sevenths=False,
        reverb=0.12,
        pump=0.6,
    ),
}

MOODS: dict[str, MoodStyle] = {
    "happy": MoodStyle(
        "happy",
        minor=False,
        register_shift=6,
        step=2,
        articulation=0.45,
        gain=0.8,
        rolloff=1.0,
        drive=0.0,
        attack_scale=1.0,
        extra_hats=False,
    ),
    "sad": MoodStyle(
        "sad",
        minor=True,
        register_shift=-7,
        step=4,
        articulation=1.1,
        gain=0.6,
        rolloff=2.0,
        drive=0.0,
        attack_scale=2.0,
        extra_hats=False,
    ),
    "energetic": MoodStyle(
        "energetic",
        minor=False,
        register_shift=3,
        step=1,
        articulation=0.8,
        gain=1.0,
        rolloff=0.6,
        drive=2.5,
        attack_scale=0.5,
        extra_hats=True,
    ),
    "calm": MoodStyle(
        "calm",
        minor=False,
        register_shift=0,
        step=8,
        articulation=1.3,
        gain=0.35,
        rolloff=2.4,
        drive=0.0,
        attack_scale=4.0,
        extra_hats=False,
    ),
}

INSTRUMENTS: dict[str, InstrumentRole] = {
    "piano": InstrumentRole("piano", role="comp", centre_midi=62, level=0.55, pan=-0.3),
    "bass": InstrumentRole("bass", role="bass", centre_midi=36, level=0.7, pan=0.0),
    "drums": InstrumentRole("drums", role="drums", centre_midi=0, level=0.8, pan=0.0),
    "strings": InstrumentRole("strings", role="pad", centre_midi=67, level=0.35, pan=0.0),
    "synthesizer": InstrumentRole("synthesizer", role="lead", centre_midi=88, level=0.4, pan=0.15),
    "guitar": InstrumentRole("guitar", role="strum", centre_midi=50, level=0.35, pan=0.35, drive=4.0),
}

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)

# Chord progressions as scale degrees (0 = tonic), one chord per genre.bars_per_chord bars.
MAJOR_PROGRESSIONS = ((0, 4, 5, 3), (0, 3, 4, 3), (5, 3, 0, 4), (0, 5, 3, 4))
MINOR_PROGRESSIONS = ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2))
JAZZ_PROGRESSIONS = ((1, 4, 0, 5), (0, 5, 1, 4))
