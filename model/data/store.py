"""The packed latent store: each split of the Parquet shards as one memory-mappable, frame-major float16 array.

Layout of ``<pack.out_dir>`` (written by the ``pack`` stage, read by training)::

    store.json              {version, dim, frame_rate, codec, settings, shards: [[name, bytes], ...],
                             splits: {split: {clips, frames}}}
    <split>/latents.npy     (total_frames, D) float16, clip i at rows [offset_i, offset_i + n_frames_i)
    <split>/clips.parquet   track_id, clip_index, caption, offset (int64), n_frames (int32), in shard order

Only valid frames are stored (the shards' zero padding is dropped). Frame-major means a crop of ``F`` frames is one
contiguous read of ``F * D * 2`` bytes (``os.pread``), and every process on a node reading the file shares one
page-cache copy, so training memory does not grow with the dataset. Packing streams shard by shard (memory: one shard) and writes
into a temporary sibling directory that is renamed into place at the end: a store that exists is complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from model.data.shards import read_shard, shard_metadata, shard_paths
from model.runtime.atomic_io import atomic_dir

logger = logging.getLogger(__name__)

STORE_VERSION = 1
STORE_FILE = "store.json"
LATENTS_FILE = "latents.npy"
CLIPS_FILE = "clips.parquet"
SPLITS = ("train", "validation")
CLIPS_SCHEMA = pa.schema(
    [
        ("track_id", pa.string()),
        ("clip_index", pa.int32()),
        ("caption", pa.string()),
        ("offset", pa.int64()),
        ("n_frames", pa.int32()),
    ]
)


def shard_listing(shards_dir: str | os.PathLike) -> list[list[Any]]:
    """[[file name, size in bytes], ...] of the shards: what a store records to detect that it is stale."""
    return [[p.name, p.stat().st_size] for p in shard_paths(shards_dir)]


def _count_frames(paths: list[Path], splits: tuple[str, ...]) -> dict[str, int]:
    """Valid frames per split, from the small ``split`` and ``n_frames`` columns only."""
    frames = dict.fromkeys(splits, 0)
    for path in paths:
        table = pq.read_table(path, columns=["split", "n_frames"])
        for split in splits:
            rows = table.filter(pc.equal(table["split"], split))
            frames[split] += int(pc.sum(rows["n_frames"]).as_py() or 0)
    return frames


def pack_store(
    shards_dir: str | os.PathLike, out_dir: str | os.PathLike, splits: tuple[str, ...] = SPLITS
) -> dict[str, Any]:
    """Pack ``splits`` of every shard in ``shards_dir`` into a store at ``out_dir`` (replaced atomically).

    Memory is bounded by one shard: latents are appended to each split's ``.npy`` file as each shard is read.
    Returns the store description (the content of ``store.json``).
    """
    meta = shard_metadata(shards_dir)
    paths = shard_paths(shards_dir)
    dim = meta.latent_shape[0]
    out = Path(out_dir).resolve()
    files: dict[str, Any] = {}
    with atomic_dir(out) as tmp, contextlib.ExitStack() as open_files:
        totals = _count_frames(paths, splits)
        rows, offsets = {s: [] for s in splits}, dict.fromkeys(splits, 0)
        for split in splits:
            (tmp / split).mkdir()
            files[split] = open_files.enter_context((tmp / split / LATENTS_FILE).open("wb"))
            np.lib.format.write_array_header_1_0(
                files[split],
                {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
                    "fortran_order": False,
                    "shape": (totals[split], dim),
                },
            )
        for path in tqdm(paths, desc="pack shards", unit="shard", leave=False):
            for rec in read_shard(path):
                if rec.split not in files:
                    continue
                if not 0 < rec.n_frames <= rec.latent.shape[1]:
                    raise ValueError(
                        f"{path}: track {rec.track_id} clip {rec.clip_index} has n_frames="
                        f"{rec.n_frames} outside [1, {rec.latent.shape[1]}]; re-run the encode stage"
                    )
                frames = np.ascontiguousarray(rec.latent[:, : rec.n_frames].T, dtype=np.float16)
                if not np.isfinite(frames).all():
                    raise ValueError(
                        f"{path}: track {rec.track_id} clip {rec.clip_index} has NaN/inf latents; "
                        "the encode stage should have rejected it - re-run `dvc repro encode`"
                    )
                files[rec.split].write(frames.tobytes())
                rows[rec.split].append(
                    (rec.track_id, rec.clip_index, rec.caption, offsets[rec.split], rec.n_frames)
                )
                offsets[rec.split] += rec.n_frames
        for split in splits:
            files[split].close()
            if offsets[split] != totals[split]:
                raise RuntimeError(
                    f"{shards_dir} changed while packing ({split}: {offsets[split]} frames written, "
                    f"{totals[split]} counted); pack again"
                )
            columns = list(zip(*rows[split], strict=True)) if rows[split] else [[]] * 5
            pq.write_table(
                pa.Table.from_arrays(
                    [pa.array(list(c), f.type) for c, f in zip(columns, CLIPS_SCHEMA, strict=True)],
                    schema=CLIPS_SCHEMA,
                ),
                tmp / split / CLIPS_FILE,
            )
        description = {
            "version": STORE_VERSION,
            "dim": dim,
            "frame_rate": meta.frame_rate,
            "codec": meta.codec,
            "settings": meta.settings,
            "shards": shard_listing(shards_dir),
            "splits": {s: {"clips": len(rows[s]), "frames": offsets[s]} for s in splits},
        }
        (tmp / STORE_FILE).write_text(json.dumps(description, indent=2) + "\n")
    logger.info(
        "packed %s -> %s: %s",
        shards_dir,
        out,
        ", ".join(f"{s} {d['clips']} clips / {d['frames']} frames" for s, d in description["splits"].items()),
    )
    return description


def read_description(store_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(store_dir) / STORE_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no packed latent store; run `python -m pipelines.pack` (pack.out_dir)"
        )
    description = json.loads(path.read_text())
    if description.get("version") != STORE_VERSION:
        raise ValueError(
            f"{path}: store version {description.get('version')!r}, this code reads {STORE_VERSION}; "
            "run `python -m pipelines.pack` again"
        )
    return description


def check_current(store_dir: str | os.PathLike, shards_dir: str | os.PathLike) -> None:
    """Raise when the store was packed from other shards than those now in ``shards_dir``."""
    packed = read_description(store_dir)["shards"]
    if packed != shard_listing(shards_dir):
        raise ValueError(
            f"{store_dir} was packed from other shards than those in {shards_dir} (encode ran since); "
            "run `python -m pipelines.pack` (or `dvc repro pack`)"
        )


@dataclass(frozen=True)
class PackedClips:
    """One split of a store: ``window(i, start, frames)`` reads one crop with a positioned read (``os.pread``).

    Nothing of the split is loaded or memory-mapped: each crop is one contiguous read through the page cache, which
    keeps one copy per node for every process reading the store, and (unlike pages of a memory map) never counts
    in a process's RSS, however long the run. ``offsets``/``lengths`` (N,) locate clip i in frames.
    """

    path: str
    data_offset: int
    offsets: np.ndarray
    lengths: np.ndarray
    captions: tuple[str, ...]
    track_ids: tuple[str, ...]
    dim: int
    frame_rate: float
    fd: int = field(default=-1, compare=False)

    @classmethod
    def open(cls, store_dir: str | os.PathLike, split: str) -> PackedClips:
        description = read_description(store_dir)
        if split not in description["splits"]:
            raise ValueError(f"{store_dir} holds splits {sorted(description['splits'])}, not {split!r}")
        root = Path(store_dir) / split
        table = pq.read_table(root / CLIPS_FILE)
        dim = int(description["dim"])
        with (root / LATENTS_FILE).open("rb") as f:
            version = np.lib.format.read_magic(f)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = reader(f)
            data_offset = f.tell()
        if shape != (description["splits"][split]["frames"], dim) or dtype != np.float16:
            raise ValueError(
                f"{root / LATENTS_FILE}: array {shape} {dtype} does not match {STORE_FILE}; pack again"
            )
        fd = os.open(root / LATENTS_FILE, os.O_RDONLY)
        return cls(
            str(root / LATENTS_FILE),
            data_offset,
            table["offset"].to_numpy(),
            table["n_frames"].to_numpy(),
            tuple(table["caption"].to_pylist()),
            tuple(table["track_id"].to_pylist()),
            dim,
            float(description["frame_rate"]),
            fd,
        )

    def __len__(self) -> int:
        return len(self.offsets)

    def length(self, index: int) -> int:
        return int(self.lengths[index])

    def window(self, index: int, start: int, frames: int) -> np.ndarray:
        """Frames [start, start + frames) of clip ``index`` (clipped to its end) as (D, w) float32."""
        begin = int(self.offsets[index]) + start
        count = min(start + frames, int(self.lengths[index])) - start
        row = self.dim * 2  # bytes per frame (float16)
        data = os.pread(self.fd, count * row, self.data_offset + begin * row)
        if len(data) != count * row:
            raise OSError(
                f"{self.path}: short read at frame {begin} (truncated store?); run the pack stage again"
            )
        return np.frombuffer(data, dtype=np.float16).reshape(count, self.dim).T.astype(np.float32)

    def head(self, n: int) -> PackedClips:
        """The first ``n`` clips (nothing is read)."""
        return PackedClips(
            self.path,
            self.data_offset,
            self.offsets[:n],
            self.lengths[:n],
            self.captions[:n],
            self.track_ids[:n],
            self.dim,
            self.frame_rate,
            self.fd,
        )

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
