"""A folder of your own audio as a dataset: the same prepared tables as the synthetic and Jamendo sources.

Layout (``data.folder.root``; nested folders are fine)::

    my-music/
      captions.csv                 path,caption[,tags]   (or captions.jsonl, or one sidecar .txt per file)
      album-1/intro.wav            wav, flac, mp3 or ogg (decoded by soundfile)
      album-1/intro.txt            optional sidecar caption, used when captions.csv does not list the file

``path`` is relative to the root (``/`` separators). ``tags`` are Jamendo-style: in CSV one string of
``category---name`` tokens separated by spaces, commas, ``;`` or ``|`` (``genre---rock instrument---piano``); in
JSONL a list of such strings or a ``{category: [names]}`` object; categories ``genre``, ``instrument`` and
``mood/theme`` (or ``mood``). Every audio file needs a caption: a file without one stops the stage naming it, unless
``caption_from_tags`` builds the caption from its tags. Each file's split is a pure function of its path (a sha256
hash against ``validation_share`` / ``test_share``), so adding files never moves others between splits; its
``track_id`` (``track_`` + 12 digits) is a hash of the path too. Unreadable, too short, silent and duplicate files
(the same decoded samples as an earlier path) go to the rejects table with the reason.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from model.audio.io import AudioDecodeError, audio_info
from model.audio.stream import iter_decoded
from model.datasets.captions import caption as caption_from_tags
from model.datasets.catalog import REJECTS_SCHEMA, TRACKS_SCHEMA, PreparedTables
from model.runtime.errors import InputError

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
CAPTION_FILES = ("captions.csv", "captions.jsonl")
TAG_SEPARATOR = "---"
_CATEGORY = {"genre": "genre", "instrument": "instrument", "mood/theme": "mood", "mood": "mood"}
_TOKEN_SPLIT = re.compile(r"[\s,;|]+")
_MAX_LISTED = 8


class FolderError(InputError, ValueError):
    """A folder dataset that cannot be used as it is; the message names the file (and line) and the fix."""


@dataclass(frozen=True)
class FolderConfig:
    """``data.folder`` in params.yaml (meaning of each key: docs/stages/prepare.md; defaults: the params schema)."""

    root: str
    captions: str
    caption_from_tags: bool
    validation_share: float
    test_share: float
    min_seconds: float
    silence_dbfs: float

    def __post_init__(self) -> None:
        if self.validation_share + self.test_share >= 1.0:
            raise ValueError(
                "params.yaml: data.folder.validation_share + data.folder.test_share must leave a training "
                f"share, got {self.validation_share} + {self.test_share}"
            )


@dataclass(frozen=True)
class CaptionEntry:
    """What the captions (file or sidecar) say about one audio file; ``where`` names the source for messages."""

    caption: str
    genre: tuple[str, ...]
    instrument: tuple[str, ...]
    mood: tuple[str, ...]
    where: str


@dataclass(frozen=True)
class FileScan:
    """One full decode: length, RMS level over all channels (dBFS) and a hash of the 16-bit samples."""

    seconds: float
    rms_dbfs: float
    content_sha256: str


def folder_track_id(relpath: str) -> str:
    """``track_`` + 12 digits from a sha256 of the path (Jamendo-style; never collides with 7-digit ids)."""
    digest = hashlib.sha256(relpath.encode()).digest()
    return f"track_{int.from_bytes(digest[:8], 'big') % 10**12:012d}"


def hash_split(relpath: str, validation_share: float, test_share: float) -> str:
    """``test`` / ``validation`` / ``train`` by where a sha256 of the path falls in [0, 1)."""
    u = int.from_bytes(hashlib.sha256(b"split\0" + relpath.encode()).digest()[:8], "big") / 2**64
    if u < test_share:
        return "test"
    return "validation" if u < test_share + validation_share else "train"


def find_audio(root: Path) -> list[str]:
    """Audio files under ``root`` (any depth, hidden files and folders skipped) as sorted posix relpaths."""
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES:
            found.append(rel.as_posix())
    return sorted(found)


def parse_tags(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    """Tags as ``{genre, instrument, mood: names}`` from a ``genre---rock ...`` string, a list of such tokens or a
    ``{category: [names]}`` object; raises FolderError naming ``where`` for anything else."""
    out: dict[str, list[str]] = {"genre": [], "instrument": [], "mood": []}

    def add(category: str, name: str) -> None:
        key = _CATEGORY.get(category.strip().lower())
        name = name.strip()
        if key is None:
            raise FolderError(
                f"{where}: unknown tag category {category!r} (known: genre, instrument, mood/theme)"
            )
        if not name:
            raise FolderError(f"{where}: empty tag name in category {category!r}")
        if name not in out[key]:
            out[key].append(name)

    if value is None or value == "":
        pass
    elif isinstance(value, dict):
        for category, names in value.items():
            for name in [names] if isinstance(names, str) else names or []:
                add(str(category), str(name))
    elif isinstance(value, str | list):
        tokens = _TOKEN_SPLIT.split(value) if isinstance(value, str) else [str(v) for v in value]
        for token in filter(None, (t.strip() for t in tokens)):
            category, sep, name = token.partition(TAG_SEPARATOR)
            if not sep:
                raise FolderError(f"{where}: tag {token!r} is not of the form category---name")
            add(category, name)
    else:
        raise FolderError(f"{where}: tags must be a string, a list or a {{category: [names]}} object")
    return {k: tuple(v) for k, v in out.items()}


def _relpath(root: Path, raw: Any, where: str) -> str:
    text = str(raw or "").strip().replace("\\", "/")
    if not text:
        raise FolderError(f"{where}: empty path")
    path = Path(text)
    if path.is_absolute():
        try:
            path = path.relative_to(root.resolve())
        except ValueError:
            raise FolderError(f"{where}: {text} is not inside the folder {root}") from None
    rel = path.as_posix()
    while rel.startswith("./"):
        rel = rel[2:]
    return rel


def _entry(root: Path, record: dict[str, Any], where: str) -> tuple[str, CaptionEntry]:
    rel = _relpath(root, record.get("path"), where)
    tags = parse_tags(record.get("tags"), where)
    text = record.get("caption")
    return rel, CaptionEntry(str(text or "").strip(), tags["genre"], tags["instrument"], tags["mood"], where)


def read_captions(root: Path, path: Path) -> dict[str, CaptionEntry]:
    """``{relpath: entry}`` from a captions CSV (header with ``path`` and ``caption``) or JSONL file."""
    records: list[tuple[str, dict[str, Any]]] = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FolderError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise FolderError(f"{path}:{n}: expected an object with path and caption")
            records.append((f"{path}:{n}", record))
    elif path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            if "path" not in header or "caption" not in header:
                raise FolderError(
                    f"{path}:1: the header must name the columns path and caption, got {header}"
                )
            reader.fieldnames = header
            records = [(f"{path}:{n}", row) for n, row in enumerate(reader, start=2)]
    else:
        raise FolderError(f"{path}: captions must be a .csv or .jsonl file (data.folder.captions)")
    entries: dict[str, CaptionEntry] = {}
    for where, record in records:
        rel, entry = _entry(root, record, where)
        if rel in entries:
            raise FolderError(f"{where}: {rel} is listed twice (first at {entries[rel].where})")
        entries[rel] = entry
    return entries


def captions_path(root: Path, captions: str) -> Path | None:
    """The captions file: ``data.folder.captions`` inside ``root``, else captions.csv/.jsonl if present, else None."""
    if captions:
        path = root / captions
        if not path.is_file():
            raise FolderError(
                f"params.yaml: data.folder.captions = {captions!r}: no such file in {root} (it is a path inside "
                "data.folder.root; empty = captions.csv or captions.jsonl there, else sidecar .txt files)"
            )
        return path
    found = [root / name for name in CAPTION_FILES if (root / name).is_file()]
    if len(found) > 1:
        raise FolderError(f"{root} holds both {CAPTION_FILES}; name the one to use in data.folder.captions")
    return found[0] if found else None


def sidecar(root: Path, rel: str) -> CaptionEntry | None:
    """The caption in ``<file without suffix>.txt`` beside the audio file, if there is one."""
    path = (root / rel).with_suffix(".txt")
    if not path.is_file():
        return None
    return CaptionEntry(path.read_text(encoding="utf-8").strip(), (), (), (), str(path))


def scan_file(path: Path) -> FileScan:
    """Decode ``path`` once (in chunks): seconds, RMS dBFS, sha256 of the samples as 16-bit integers plus rate
    and channel count (so a 16-bit WAV and its lossless FLAC conversion hash alike)."""
    info = audio_info(path)
    digest = hashlib.sha256(f"{info.sample_rate}/{info.channels}\0".encode())
    frames, total_sq, count = 0, 0.0, 0
    for chunk in iter_decoded(path):
        # libsndfile reads 16-bit PCM as int / 32768, so this recovers a lossless file's stored integers exactly
        quantised = np.clip(np.round(chunk.T * 32768.0), -32768, 32767).astype("<i2")
        digest.update(quantised.tobytes())
        frames += chunk.shape[1]
        total_sq += float(np.square(chunk, dtype=np.float64).sum())
        count += chunk.size
    rms = math.sqrt(total_sq / max(count, 1))
    return FileScan(
        frames / info.sample_rate, 20 * math.log10(rms) if rms > 0 else -math.inf, digest.hexdigest()
    )


def _list(items: list[str]) -> str:
    more = len(items) - _MAX_LISTED
    return ", ".join(items[:_MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


def resolve_captions(
    root: Path,
    files: list[str],
    listed: dict[str, CaptionEntry],
    listed_path: Path | None,
    cfg: FolderConfig,
    caption_seed: int,
) -> dict[str, tuple[str, CaptionEntry]]:
    """``{relpath: (caption, entry)}`` for every audio file, from the captions file's entries ``listed`` or a sidecar;
    raises FolderError naming every caption-less file."""
    out: dict[str, tuple[str, CaptionEntry]] = {}
    missing: list[str] = []
    for rel in files:
        entry = listed.get(rel) or sidecar(root, rel)
        if entry is None:
            entry = CaptionEntry("", (), (), (), rel)
        text = entry.caption
        if not text and cfg.caption_from_tags and (entry.genre or entry.instrument or entry.mood):
            text = caption_from_tags(
                folder_track_id(rel), entry.genre, entry.instrument, entry.mood, caption_seed
            )
        if text:
            out[rel] = (text, entry)
        else:
            missing.append(rel)
    if missing:
        source = listed_path.name if listed_path else "captions.csv (path,caption[,tags])"
        fix = (
            "give them tags (data.folder.caption_from_tags is on but they have none)"
            if cfg.caption_from_tags
            else "or set data.folder.caption_from_tags: true to build captions from their tags"
        )
        raise FolderError(
            f"{root}: {len(missing)} audio file(s) have no caption: {_list(missing)}; add them to {source} or "
            f"write a sidecar .txt beside each, {fix}"
        )
    return out


def build_folder_tables(cfg: FolderConfig, caption_seed: int = 0) -> PreparedTables:
    """The track table and rejects of the audio folder ``cfg.root`` (see the module docstring)."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise FolderError(
            f"params.yaml: data.folder.root = {cfg.root!r} is not a folder; point it at your audio "
            "(wav, flac, mp3, ogg; nested folders are fine), see docs/finetune.md"
        )
    files = find_audio(root)
    if not files:
        raise FolderError(f"{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in it or its subfolders")
    listed_path = captions_path(root, cfg.captions)
    listed = read_captions(root, listed_path) if listed_path else {}
    captions = resolve_captions(root, files, listed, listed_path, cfg, caption_seed)
    present = set(files)
    rejects: list[dict[str, str]] = [
        {
            "track_id": folder_track_id(rel),
            "audio_path": str(root / rel),
            "reason": f"listed in {entry.where} but no such audio file in the folder",
        }
        for rel, entry in listed.items()
        if rel not in present
    ]
    rows: dict[str, list] = {name: [] for name in TRACKS_SCHEMA.names}
    seen_ids: dict[str, str] = {}
    seen_content: dict[str, str] = {}
    for rel in tqdm(files, desc="checking audio", unit="file"):
        track_id, path = folder_track_id(rel), root / rel
        if track_id in seen_ids:
            raise FolderError(
                f"{root}: {rel} and {seen_ids[track_id]} hash to the same id {track_id}; rename one"
            )
        seen_ids[track_id] = rel
        reason = None
        try:
            scan = scan_file(path)
        except AudioDecodeError as exc:
            reason = f"unreadable: {exc.reason}"
        else:
            if scan.seconds < cfg.min_seconds:
                reason = f"too short: {scan.seconds:.2f} s < data.folder.min_seconds {cfg.min_seconds:g}"
            elif scan.rms_dbfs < cfg.silence_dbfs:
                reason = (
                    f"silent: RMS {scan.rms_dbfs:.1f} dBFS < data.folder.silence_dbfs {cfg.silence_dbfs:g}"
                )
            elif scan.content_sha256 in seen_content:
                reason = f"duplicate content of {seen_content[scan.content_sha256]}"
            else:
                seen_content[scan.content_sha256] = rel
        if reason is not None:
            rejects.append({"track_id": track_id, "audio_path": str(path), "reason": reason})
            continue
        text, entry = captions[rel]
        rows["track_id"].append(track_id)
        rows["audio_path"].append(str(path))
        rows["duration"].append(float(scan.seconds))
        rows["genre"].append(list(entry.genre))
        rows["instrument"].append(list(entry.instrument))
        rows["mood"].append(list(entry.mood))
        rows["caption"].append(text)
        rows["split"].append(hash_split(rel, cfg.validation_share, cfg.test_share))
    if rejects:
        log.warning("%d files rejected (see rejects table); first: %s", len(rejects), rejects[0])
    if rows["split"] and "train" not in rows["split"]:
        raise FolderError(
            f"{root}: none of the {len(rows['split'])} usable files fell in the train split; lower "
            "data.folder.validation_share / data.folder.test_share or add files"
        )
    return PreparedTables(
        pa.Table.from_pydict(rows, schema=TRACKS_SCHEMA), pa.Table.from_pylist(rejects, schema=REJECTS_SCHEMA)
    )
