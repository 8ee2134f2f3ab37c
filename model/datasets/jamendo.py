"""MTG-Jamendo metadata: the official TSV format, its splits and its audio layout.

Format (as written by the dataset's ``scripts/commons.py``, Python ``csv`` with a tab delimiter, so CRLF line
ends): a header ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS``, then one row per track::

    track_0000214  artist_000014  album_000031  14/214.mp3  124.6  genre---punkrock  instrument---piano ...

Each tag is its own trailing column ``category---name`` with category ``genre``, ``instrument`` or
``mood/theme``. ``PATH`` is ``NN/ID.mp3`` where ``NN`` is the last two digits of the numeric id; the
``audio-low`` download names the same file ``NN/ID.low.mp3``. Splits live in ``splits/split-N/`` as
``<subset>-{train,validation,test}.tsv`` with the same row format (subset ``autotagging``,
``autotagging_moodtheme``, ...).

A malformed row is never turned into a tag silently: strict reading raises :class:`JamendoFormatError`
naming file and line; lenient reading logs the row and returns it as a :class:`RowProblem`.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from model.runtime.errors import InputError

log = logging.getLogger(__name__)

HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS")
CATEGORIES = ("genre", "instrument", "mood/theme")
TAG_SEPARATOR = "---"
SPLITS = ("train", "validation", "test")
AUDIO_EXTENSIONS = ("mp3", "flac", "wav", "ogg")

_TRACK_RE = re.compile(r"^track_(\d+)$")
_ARTIST_RE = re.compile(r"^artist_\d+$")
_ALBUM_RE = re.compile(r"^album_\d+$")
_PATH_RE = re.compile(r"^(\d{2})/(\d+)\.(low\.mp3|" + "|".join(AUDIO_EXTENSIONS) + r")$")
_TAG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _&'+.-]*$")


class JamendoFormatError(InputError, ValueError):
    """A metadata file that does not follow the MTG-Jamendo TSV format."""

    def __init__(self, path: str | os.PathLike, line: int, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


@dataclass(frozen=True)
class JamendoTrack:
    """One metadata row. ``path`` is relative to the audio root, exactly as in the TSV."""

    track_id: str
    artist_id: str
    album_id: str
    path: str
    duration: float
    genre: tuple[str, ...]
    instrument: tuple[str, ...]
    mood: tuple[str, ...]

    @property
    def tags(self) -> tuple[str, ...]:
        """The tags back in ``category---name`` form, in category order."""
        return tuple(
            f"{category}{TAG_SEPARATOR}{name}"
            for category, names in zip(CATEGORIES, (self.genre, self.instrument, self.mood), strict=True)
            for name in names
        )


@dataclass(frozen=True)
class RowProblem:
    """A row that was skipped, with where it was and why."""

    path: str
    line: int
    track_id: str
    reason: str


def track_number(track_id: str) -> int:
    """``track_0000214`` -> 214."""
    match = _TRACK_RE.match(track_id)
    if match is None:
        raise ValueError(f"not a Jamendo track id: {track_id!r} (expected track_<digits>)")
    return int(match.group(1))


def audio_relpath(track_id: str, extension: str = "mp3") -> str:
    """The official relative audio path of a track: ``track_0000214`` -> ``14/214.mp3``."""
    number = track_number(track_id)
    return f"{number % 100:02d}/{number}.{extension}"


def parse_row(fields: list[str]) -> JamendoTrack:
    """Validate one split-up TSV row; raises ValueError with the reason (no file/line: the caller adds them)."""
    while fields and fields[-1] == "":  # a trailing tab carries no tag
        fields = fields[:-1]
    if len(fields) < 5:
        raise ValueError(f"expected at least 5 tab-separated columns {HEADER[:5]}, found {len(fields)}")
    track_id, artist_id, album_id, path, duration_text = (f.strip() for f in fields[:5])
    if not _TRACK_RE.match(track_id):
        raise ValueError(f"bad TRACK_ID {track_id!r} (expected track_<digits>)")
    if not _ARTIST_RE.match(artist_id):
        raise ValueError(f"bad ARTIST_ID {artist_id!r} (expected artist_<digits>)")
    if not _ALBUM_RE.match(album_id):
        raise ValueError(f"bad ALBUM_ID {album_id!r} (expected album_<digits>)")
    path_match = _PATH_RE.match(path)
    number = track_number(track_id)
    if path_match is None:
        raise ValueError(f"bad PATH {path!r} (expected NN/<id>.mp3)")
    if int(path_match.group(2)) != number or path_match.group(1) != f"{number % 100:02d}":
        raise ValueError(f"PATH {path!r} does not belong to {track_id} (expected {audio_relpath(track_id)})")
    try:
        duration = float(duration_text)
    except ValueError:
        raise ValueError(f"DURATION {duration_text!r} is not a number") from None
    if not math.isfinite(duration) or duration <= 0:
        raise ValueError(f"DURATION {duration_text!r} must be a positive number of seconds")
    by_category: dict[str, list[str]] = {category: [] for category in CATEGORIES}
    for raw in fields[5:]:
        tag = raw.strip()
        category, sep, name = tag.partition(TAG_SEPARATOR)
        if not sep:
            raise ValueError(f"tag {raw!r} is not of the form category---name")
        if category not in by_category:
            raise ValueError(
                f"tag {raw!r} has unknown category {category!r} (known: {', '.join(CATEGORIES)})"
            )
        if not _TAG_NAME_RE.match(name) or TAG_SEPARATOR in name:
            raise ValueError(f"tag {raw!r} has an invalid name {name!r}")
        if name not in by_category[category]:
            by_category[category].append(name)
    return JamendoTrack(
        track_id=track_id,
        artist_id=artist_id,
        album_id=album_id,
        path=path,
        duration=duration,
        genre=tuple(by_category["genre"]),
        instrument=tuple(by_category["instrument"]),
        mood=tuple(by_category["mood/theme"]),
    )


def read_tsv(path: str | os.PathLike, strict: bool = True) -> tuple[list[JamendoTrack], list[RowProblem]]:
    """Read one metadata or split TSV (CRLF or LF).

    Returns (tracks in file order, skipped rows). With ``strict`` the first bad row raises
    JamendoFormatError; otherwise each bad row is logged and returned as a RowProblem. A missing or wrong
    header, and a file that does not exist, always raise.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: Jamendo metadata TSV not found")
    tracks: list[JamendoTrack] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise JamendoFormatError(p, 1, "file is empty (expected the header " + "\\t".join(HEADER) + ")")
        if tuple(h.strip().lstrip("\ufeff") for h in header) != HEADER:
            raise JamendoFormatError(p, 1, f"unexpected header {header!r} (expected {list(HEADER)})")
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            try:
                track = parse_row(fields)
                if track.track_id in seen:
                    raise ValueError(f"duplicate {track.track_id} (first on line {seen[track.track_id]})")
            except ValueError as exc:
                if strict:
                    raise JamendoFormatError(p, line, str(exc)) from None
                problem = RowProblem(str(p), line, fields[0].strip() if fields else "", str(exc))
                log.warning("skipping %s:%d: %s", p, line, exc)
                problems.append(problem)
                continue
            seen[track.track_id] = line
            tracks.append(track)
    return tracks, problems


def split_files(split_dir: str | os.PathLike, subset: str = "autotagging") -> dict[str, Path]:
    """``{split: path}`` of ``<split_dir>/<subset>-{train,validation,test}.tsv``; raises if any is missing."""
    d = Path(split_dir)
    if not d.is_dir():
        raise FileNotFoundError(
            f"{d}: split directory not found (expected e.g. mtg-jamendo-dataset/data/splits/split-0)"
        )
    files = {split: d / f"{subset}-{split}.tsv" for split in SPLITS}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        present = sorted(f.name for f in d.glob("*.tsv"))
        raise FileNotFoundError(f"missing split files {missing}; present in {d}: {present}")
    return files


def read_splits(
    split_dir: str | os.PathLike, subset: str = "autotagging", strict: bool = True
) -> tuple[dict[str, list[JamendoTrack]], list[RowProblem]]:
    """Read the three split files; a track listed in two splits is an error."""
    result: dict[str, list[JamendoTrack]] = {}
    problems: list[RowProblem] = []
    owner: dict[str, str] = {}
    for split, path in split_files(split_dir, subset).items():
        tracks, bad = read_tsv(path, strict=strict)
        problems += bad
        for track in tracks:
            if track.track_id in owner:
                raise JamendoFormatError(
                    path, 0, f"{track.track_id} is in both {owner[track.track_id]} and {split}"
                )
            owner[track.track_id] = split
        result[split] = tracks
    return result, problems


def resolve_audio(audio_root: str | os.PathLike, relpath: str) -> Path | None:
    """The audio file of a TSV ``PATH`` under ``audio_root``: the path itself or its ``.low.mp3`` twin.

    Returns None when neither exists.
    """
    root = Path(audio_root)
    candidate = root / relpath
    if candidate.is_file():
        return candidate
    if relpath.endswith(".mp3") and not relpath.endswith(".low.mp3"):
        low = root / (relpath[: -len(".mp3")] + ".low.mp3")
        if low.is_file():
            return low
    return None


def write_tsv(path: str | os.PathLike, tracks: Iterable[JamendoTrack]) -> None:
    """Write tracks in the official format (header, tab-separated, tags as trailing columns, CRLF).

    The caller makes this atomic (``model.runtime.atomic_io.atomic_path``) when it matters.
    """
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\r\n", quoting=csv.QUOTE_NONE)
        writer.writerow(HEADER)
        for t in tracks:
            writer.writerow(
                [t.track_id, t.artist_id, t.album_id, t.path, _format_duration(t.duration), *t.tags]
            )


def _format_duration(seconds: float) -> str:
    return f"{seconds:.1f}"
