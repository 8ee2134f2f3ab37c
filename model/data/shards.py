"""Parquet latent shards: one row per clip, plain Arrow types, codec description in the schema metadata.

Columns (docs/ARCHITECTURE.md): ``track_id`` str, ``clip_index`` int32, ``start_s`` float64, ``n_frames`` int32
(valid frames; the rest is zero padding), ``latent`` fixed_size_list<fixed_size_list<float16, T>, D>, ``caption``
str, ``genre``/``instrument``/``mood`` list<str>, ``split`` str. The schema metadata key ``flowjam`` holds JSON
{codec, settings, version, latent_shape [D, T], dtype, frame_rate}. Plain nested fixed-size lists (not Ray's tensor
extension) read the same in pyarrow, polars and DuckDB.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.runtime.atomic_io import write_parquet_atomic

SHARD_FORMAT_VERSION = 1
METADATA_KEY = b"flowjam"
SHARD_GLOB = "shard-*.parquet"
LATENT_DTYPE = np.float16


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


@dataclass(frozen=True)
class ShardMetadata:
    """What every shard of one encode run shares: the codec and the latent layout."""

    codec: str
    settings: dict[str, Any]
    latent_shape: tuple[int, int]
    frame_rate: float
    dtype: str = "float16"
    version: int = SHARD_FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(
            {
                "codec": self.codec,
                "settings": self.settings,
                "version": self.version,
                "latent_shape": list(self.latent_shape),
                "dtype": self.dtype,
                "frame_rate": self.frame_rate,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "shard") -> ShardMetadata:
        meta = json.loads(text)
        if meta.get("version") != SHARD_FORMAT_VERSION:
            raise ValueError(
                f"{source}: shard format version {meta.get('version')!r}, this code reads "
                f"{SHARD_FORMAT_VERSION}; re-run the encode stage"
            )
        d, t = meta["latent_shape"]
        return cls(
            codec=meta["codec"],
            settings=meta["settings"],
            latent_shape=(int(d), int(t)),
            frame_rate=float(meta["frame_rate"]),
            dtype=meta["dtype"],
            version=int(meta["version"]),
        )


@dataclass(frozen=True)
class ClipRecord:
    """One shard row; ``latent`` is (D, T), frames at and after ``n_frames`` are zero padding."""

    track_id: str
    clip_index: int
    start_s: float
    n_frames: int
    latent: np.ndarray = field(repr=False)
    caption: str = ""
    genre: tuple[str, ...] = ()
    instrument: tuple[str, ...] = ()
    mood: tuple[str, ...] = ()
    split: str = ""


def shard_schema(meta: ShardMetadata) -> pa.Schema:
    d, t = meta.latent_shape
    latent_type = pa.list_(pa.list_(pa.float16(), t), d)
    fields = [
        pa.field("track_id", pa.string(), nullable=False),
        pa.field("clip_index", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("n_frames", pa.int32(), nullable=False),
        pa.field("latent", latent_type, nullable=False),
        pa.field("caption", pa.string()),
        pa.field("genre", pa.list_(pa.string())),
        pa.field("instrument", pa.list_(pa.string())),
        pa.field("mood", pa.list_(pa.string())),
        pa.field("split", pa.string()),
    ]
    return pa.schema(fields, metadata={METADATA_KEY: meta.to_json().encode()})


def latent_array(latents: np.ndarray) -> pa.FixedSizeListArray:
    """(R, D, T) float -> Arrow fixed_size_list<fixed_size_list<float16, T>, D> of length R."""
    if latents.ndim != 3:
        raise ValueError(f"latents must be (R, D, T), got shape {latents.shape}")
    r, d, t = latents.shape
    flat = pa.array(np.ascontiguousarray(latents, dtype=LATENT_DTYPE).reshape(-1), type=pa.float16())
    return pa.FixedSizeListArray.from_arrays(pa.FixedSizeListArray.from_arrays(flat, t), d)


def latents_from_column(column: pa.Array | pa.ChunkedArray, latent_shape: tuple[int, int]) -> np.ndarray:
    """The ``latent`` column -> (R, D, T) float16 numpy, without a Python loop."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    d, t = latent_shape
    if len(column) == 0:
        return np.zeros((0, d, t), dtype=LATENT_DTYPE)
    # offsets of sliced arrays are honoured by .flatten()
    values = column.flatten().flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(column), d, t).astype(LATENT_DTYPE, copy=False)


def records_table(records: Sequence[ClipRecord], meta: ShardMetadata) -> pa.Table:
    """Build one shard's table; raises when a latent has the wrong shape or is not finite in float16."""
    d, t = meta.latent_shape
    lat = np.zeros((len(records), d, t), dtype=LATENT_DTYPE)
    for i, rec in enumerate(records):
        if rec.latent.shape != (d, t):
            raise ValueError(f"{rec.track_id} clip {rec.clip_index}: latent {rec.latent.shape} != {(d, t)}")
        lat[i] = rec.latent
    if not np.isfinite(lat).all():
        raise ValueError("refusing to write non-finite latents to a shard (reject them first)")
    schema = shard_schema(meta)
    columns = {
        "track_id": pa.array([r.track_id for r in records], pa.string()),
        "clip_index": pa.array([r.clip_index for r in records], pa.int32()),
        "start_s": pa.array([r.start_s for r in records], pa.float64()),
        "n_frames": pa.array([r.n_frames for r in records], pa.int32()),
        "latent": latent_array(lat),
        "caption": pa.array([r.caption for r in records], pa.string()),
        "genre": pa.array([list(r.genre) for r in records], pa.list_(pa.string())),
        "instrument": pa.array([list(r.instrument) for r in records], pa.list_(pa.string())),
        "mood": pa.array([list(r.mood) for r in records], pa.list_(pa.string())),
        "split": pa.array([r.split for r in records], pa.string()),
    }
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def write_shard(path: str | os.PathLike, records: Sequence[ClipRecord], meta: ShardMetadata) -> None:
    """Write one shard atomically (a file that exists is complete)."""
    write_parquet_atomic(path, records_table(records, meta), compression="zstd")


def shard_paths(shard_dir: str | os.PathLike) -> list[Path]:
    """Shard files in index order."""
    return sorted(Path(shard_dir).glob(SHARD_GLOB))


def read_metadata(path: str | os.PathLike) -> ShardMetadata:
    schema = pq.read_schema(path)
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: no 'flowjam' schema metadata; not a flowjam latent shard")
    return ShardMetadata.from_json(raw, source=str(path))


def shard_metadata(shard_dir: str | os.PathLike) -> ShardMetadata:
    """The metadata shared by every shard in ``shard_dir``; raises if there is none or they disagree."""
    paths = shard_paths(shard_dir)
    if not paths:
        raise FileNotFoundError(f"{shard_dir}: no {SHARD_GLOB} files; run `python -m pipelines.encode` first")
    first = read_metadata(paths[0])
    for p in paths[1:]:
        other = read_metadata(p)
        if other != first:
            raise ValueError(
                f"{p}: codec/latent metadata differs from {paths[0]}; the directory mixes encode runs"
            )
    return first


def read_shard(path: str | os.PathLike, split: str | None = None) -> list[ClipRecord]:
    """All rows of one shard (optionally only one split), latents as (D, T) float16 arrays."""
    meta = read_metadata(path)
    table = pq.read_table(path)
    if split is not None:
        table = table.filter(pc.equal(table["split"], split))
    lat = latents_from_column(table["latent"], meta.latent_shape)
    cols = table.drop_columns(["latent"]).to_pydict()
    return [
        ClipRecord(
            track_id=cols["track_id"][i],
            clip_index=int(cols["clip_index"][i]),
            start_s=float(cols["start_s"][i]),
            n_frames=int(cols["n_frames"][i]),
            latent=lat[i],
            caption=cols["caption"][i] or "",
            genre=tuple(cols["genre"][i] or ()),
            instrument=tuple(cols["instrument"][i] or ()),
            mood=tuple(cols["mood"][i] or ()),
            split=cols["split"][i] or "",
        )
        for i in range(table.num_rows)
    ]


def iter_shards(shard_dir: str | os.PathLike, split: str | None = None) -> Iterator[ClipRecord]:
    """Stream rows shard by shard (memory: one shard at a time)."""
    for path in shard_paths(shard_dir):
        yield from read_shard(path, split=split)


def read_shards(shard_dir: str | os.PathLike, split: str | None = None) -> list[ClipRecord]:
    """Every row of every shard in ``shard_dir`` (optionally one split), in shard order."""
    shard_metadata(shard_dir)  # fails early on an empty or mixed directory
    return list(iter_shards(shard_dir, split=split))
