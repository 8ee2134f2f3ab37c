"""Captions from Jamendo tags, in the style of the challenge prompts.

``caption("track_0000214", ["rock"], ["electricguitar"], ["energetic"], seed=0)`` ->
``"An energetic rock track driven by electric guitar."``. The template is chosen by a hash of
(seed, track_id), so a caption never changes when other tracks are added. Tag names are humanised
(``hiphop`` -> ``hip hop``); mood/theme tags that are themes rather than adjectives (``film``,
``christmas``) become a "suited to ..." clause. The structured concepts stay in the tag lists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

# Jamendo tag names are written without spaces; these are the ones that are not a single plain word.
_HUMAN_NAMES = {
    # genre
    "acidjazz": "acid jazz",
    "alternativerock": "alternative rock",
    "bluesrock": "blues rock",
    "bossanova": "bossa nova",
    "classicrock": "classic rock",
    "darkambient": "dark ambient",
    "deephouse": "deep house",
    "drumnbass": "drum and bass",
    "easylistening": "easy listening",
    "edm": "EDM",
    "ethnicrock": "ethnic rock",
    "hardrock": "hard rock",
    "heavymetal": "heavy metal",
    "hiphop": "hip hop",
    "idm": "IDM",
    "instrumentalpop": "instrumental pop",
    "instrumentalrock": "instrumental rock",
    "jazzfunk": "jazz funk",
    "jazzfusion": "jazz fusion",
    "newage": "new age",
    "newwave": "new wave",
    "popfolk": "pop folk",
    "poprock": "pop rock",
    "postrock": "post-rock",
    "punkrock": "punk rock",
    "rnb": "R&B",
    "rocknroll": "rock and roll",
    "singersongwriter": "singer-songwriter",
    "synthpop": "synth pop",
    "triphop": "trip hop",
    "worldfusion": "world fusion",
    "electropop": "electropop",
    # instrument
    "acousticbassguitar": "acoustic bass guitar",
    "acousticguitar": "acoustic guitar",
    "classicalguitar": "classical guitar",
    "doublebass": "double bass",
    "drummachine": "drum machine",
    "electricguitar": "electric guitar",
    "electricpiano": "electric piano",
    "pipeorgan": "pipe organ",
    "beat": "beats",
    "computer": "computer sounds",
    # mood/theme
    "ambiental": "ambient",
    "dream": "dreamy",
}

# mood/theme tags that name a use or a theme, not a feeling: phrased as "suited to <phrase>".
_THEME_PHRASES = {
    "action": "action scenes",
    "adventure": "adventure scenes",
    "advertising": "advertising",
    "background": "background listening",
    "children": "children",
    "christmas": "Christmas",
    "commercial": "commercials",
    "corporate": "corporate videos",
    "documentary": "documentaries",
    "drama": "drama",
    "film": "film",
    "game": "video games",
    "holiday": "the holidays",
    "love": "love scenes",
    "movie": "movies",
    "nature": "nature scenes",
    "party": "parties",
    "soundscape": "soundscapes",
    "space": "space scenes",
    "sport": "sports",
    "summer": "summer days",
    "trailer": "trailers",
    "travel": "travel videos",
    "ballad": "a ballad",
}

_VOWEL_SOUNDING = ("R&B", "80s", "EDM", "IDM", "8")

# Each template: (format string, needs instruments, needs moods). Slots: {a} article for the next word,
# {moods} adjectives, {genres}, {instruments}, {Moods} capitalised adjectives, {Instruments} capitalised,
# {lead} verb agreeing with {Instruments}.
_TEMPLATES: tuple[tuple[str, bool, bool], ...] = (
    ("{a_moods} {moods} {genres} track driven by {instruments}.", True, True),
    ("{a_genres} {genres} piece with {instruments}, {moods} in mood.", True, True),
    ("{Moods} {genres} music featuring {instruments}.", True, True),
    ("{Instruments} {lead} {a_moods} {moods} {genres} tune.", True, True),
    ("{a_moods} {moods} instrumental in the {genres} style, played on {instruments}.", True, True),
    ("{a_genres} {genres} track driven by {instruments}.", True, False),
    ("{Instruments} {lead} {a_genres} {genres} tune.", True, False),
    ("{a_moods} {moods} {genres} track.", False, True),
    ("{Moods} {genres} music.", False, True),
    ("{a_genres} {genres} instrumental.", False, False),
    ("Instrumental {genres} music.", False, False),
)


def humanise(name: str) -> str:
    """A tag name as words: ``electricguitar`` -> ``electric guitar``; unknown names are kept."""
    return _HUMAN_NAMES.get(name, name)


def indefinite_article(word: str) -> str:
    """``a`` or ``an`` for the spoken start of ``word``."""
    if not word:
        return "a"
    if word.startswith(_VOWEL_SOUNDING) or word[0].lower() in "aeiou":
        return "an"
    return "a"


def join_words(words: Sequence[str]) -> str:
    """``[a]`` -> ``a``; ``[a, b]`` -> ``a and b``; ``[a, b, c]`` -> ``a, b and c``."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def caption(
    track_id: str,
    genre: Sequence[str],
    instrument: Sequence[str],
    mood: Sequence[str],
    seed: int = 0,
) -> str:
    """One caption sentence for a track's tags, chosen deterministically from (seed, track_id)."""
    adjectives = [humanise(m) for m in mood if m not in _THEME_PHRASES]
    themes = [_THEME_PHRASES[m] for m in mood if m in _THEME_PHRASES]
    genres = join_words([humanise(g) for g in genre]) or "music"
    instruments = join_words([humanise(i) for i in instrument])
    moods = join_words(adjectives)
    if genres == "music":
        candidates = [
            ("{a_moods} {moods} piece played on {instruments}.", True, True),
            ("A piece played on {instruments}.", True, False),
            ("{a_moods} {moods} instrumental piece.", False, True),
            ("An instrumental piece.", False, False),
        ]
    else:
        candidates = list(_TEMPLATES)
    usable = [
        t for t, needs_i, needs_m in candidates if needs_i == bool(instruments) and needs_m == bool(moods)
    ]
    template = usable[_stable_index(seed, track_id, len(usable))]
    text = template.format(
        a_moods=indefinite_article(moods),
        a_genres=indefinite_article(genres),
        moods=moods,
        genres=genres,
        instruments=instruments,
        Moods=_capitalise(moods),
        Instruments=_capitalise(instruments),
        lead="leads" if len(instrument) == 1 else "lead",
    )
    text = _capitalise(text)
    if themes:
        text = text[:-1] + f", suited to {join_words(themes)}."
    return text


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _stable_index(seed: int, track_id: str, n: int) -> int:
    digest = hashlib.sha256(f"{seed}\x00{track_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n
