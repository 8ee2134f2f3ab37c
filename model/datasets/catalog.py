"""The prepared track table: Jamendo metadata + official split + audio check + caption, one row per track.

Output schema (docs/ARCHITECTURE.md, ``data/prepared/tracks.parquet``): track_id, audio_path, duration
(seconds, measured from the audio file), genre / instrument / mood (lists of Jamendo tag names), caption,
split. Tracks whose audio is missing or unreadable, and skipped metadata rows, go to a rejects table
(track_id, audio_path, reason).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from model.audio.io import AudioDecodeError, audio_info
from model.datasets.captions import caption
from model.datasets.jamendo import SPLITS, read_splits, read_tsv, resolve_audio, split_files

log = logging.getLogger(__name__)

TRACKS_SCHEMA = pa.schema(
    [
        ("track_id", pa.string()),
        ("audio_path", pa.string()),
        ("duration", pa.float64()),
        ("genre", pa.list_(pa.string())),
        ("instrument", pa.list_(pa.string())),
        ("mood", pa.list_(pa.string())),
        ("caption", pa.string()),
        ("split", pa.string()),
    ]
)
REJECTS_SCHEMA = pa.schema([("track_id", pa.string()), ("audio_path", pa.string()), ("reason", pa.string())])


@dataclass(frozen=True)
class JamendoSource:
    """A Jamendo-format dataset on disk: audio root, metadata TSV (tags) and split directory (membership)."""

    audio_root: Path
    metadata_tsv: Path
    split_dir: Path
    subset: str


@dataclass(frozen=True)
class PreparedTables:
    tracks: pa.Table
    rejects: pa.Table


def build_tables(source: JamendoSource, caption_seed: int = 0, strict: bool = True) -> PreparedTables:
    """Read metadata and splits, check every audio file, caption every track.

    Tags come from ``metadata_tsv``; the split of a track is the split file that lists it. Metadata
    tracks in no split are left out (logged); split tracks missing from the metadata are rejected.
    With ``strict=False`` malformed TSV rows are rejected instead of raising.
    """
    files = split_files(source.split_dir, source.subset)
    metadata, problems = read_tsv(source.metadata_tsv, strict=strict)
    by_id = {t.track_id: t for t in metadata}
    splits, split_problems = read_splits(source.split_dir, source.subset, strict=strict)
    rejects: list[dict[str, str]] = [
        {"track_id": p.track_id, "audio_path": "", "reason": f"{p.path}:{p.line}: {p.reason}"}
        for p in problems + split_problems
    ]
    rows: dict[str, list] = {name: [] for name in TRACKS_SCHEMA.names}
    listed = {t.track_id for split in SPLITS for t in splits[split]}
    unlisted = len(by_id.keys() - listed)
    if unlisted:
        log.info(
            "%d tracks of %s are in no %s split and are left out",
            unlisted,
            source.metadata_tsv,
            source.subset,
        )
    todo = [(split, t.track_id) for split in SPLITS for t in splits[split]]
    for split, track_id in tqdm(todo, desc="checking audio", unit="track"):
        track = by_id.get(track_id)
        if track is None:
            rejects.append(
                {
                    "track_id": track_id,
                    "audio_path": "",
                    "reason": f"listed in {files[split]} but not in {source.metadata_tsv}",
                }
            )
            continue
        path = resolve_audio(source.audio_root, track.path)
        if path is None:
            expected = Path(source.audio_root) / track.path
            rejects.append(
                {
                    "track_id": track_id,
                    "audio_path": str(expected),
                    "reason": "audio file not found (nor its .low.mp3 twin)",
                }
            )
            continue
        try:
            info = audio_info(path)
            if info.frames <= 0:
                raise AudioDecodeError(path, "no audio frames")
        except AudioDecodeError as exc:
            rejects.append({"track_id": track_id, "audio_path": str(path), "reason": exc.reason})
            continue
        rows["track_id"].append(track_id)
        rows["audio_path"].append(str(path))
        rows["duration"].append(float(info.duration))
        rows["genre"].append(list(track.genre))
        rows["instrument"].append(list(track.instrument))
        rows["mood"].append(list(track.mood))
        rows["caption"].append(
            caption(track_id, track.genre, track.instrument, track.mood, seed=caption_seed)
        )
        rows["split"].append(split)
    if rejects:
        log.warning("%d tracks rejected (see rejects table); first: %s", len(rejects), rejects[0])
    tracks = pa.Table.from_pydict(rows, schema=TRACKS_SCHEMA)
    reject_table = pa.Table.from_pylist(rejects, schema=REJECTS_SCHEMA)
    return PreparedTables(tracks, reject_table)
