"""Cached reference-set embedding statistics, keyed by embedder and by a hash of the reference files.

A cache entry is two files in ``cache_dir``: ``<key>.npz`` (the EmbeddingStats arrays) and
``<key>.json`` (provenance: embedder name and settings, file-list hash, number of files, created time).
It is reused only when the embedder name, its settings and the file-list hash all match, so changing a
reference file, the embedder or its windowing recomputes the statistics.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics.fad import EmbeddingStats
from model.runtime.atomic_io import atomic_path, write_json_atomic

log = logging.getLogger(__name__)


def file_list_hash(paths: Sequence[str | os.PathLike]) -> str:
    """SHA-256 over the sorted paths and each file's size and content hash (a rename or edit changes it)."""
    digest = hashlib.sha256()
    for path in sorted(str(p) for p in paths):
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"{p}: reference file listed but missing")
        content = hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
        digest.update(f"{path}\0{p.stat().st_size}\0{content}\n".encode())
    return digest.hexdigest()


def _cache_key(embedder_name: str, settings: dict[str, Any], files_hash: str) -> str:
    blob = json.dumps({"embedder": embedder_name, "settings": settings, "files": files_hash}, sort_keys=True)
    return "reference-" + hashlib.sha256(blob.encode()).hexdigest()[:20]


def load_or_compute_reference_stats(
    cache_dir: str | os.PathLike,
    embedder_name: str,
    embedder_settings: dict[str, Any],
    paths: Sequence[str | os.PathLike],
    compute: Callable[[Sequence[str | os.PathLike]], EmbeddingStats],
) -> tuple[EmbeddingStats, dict[str, Any]]:
    """Return (stats, provenance) for ``paths``, computing with ``compute(paths)`` only on a cache miss."""
    if not paths:
        raise ValueError("reference set is empty: no audio files to compute FAD statistics from")
    files_hash = file_list_hash(paths)
    key = _cache_key(embedder_name, embedder_settings, files_hash)
    cache = Path(cache_dir)
    npz_path, meta_path = cache / f"{key}.npz", cache / f"{key}.json"
    if npz_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("embedder") == embedder_name and meta.get("file_list_hash") == files_hash:
            with np.load(npz_path) as arrays:
                stats = EmbeddingStats.from_arrays(dict(arrays))
            log.info("reference statistics reused from %s (%d windows)", npz_path, stats.count)
            return stats, {**meta, "cache_hit": True, "cache_path": str(npz_path)}
        log.warning("%s: provenance does not match this reference set; recomputing", meta_path)
    stats = compute(paths)
    meta = {
        "embedder": embedder_name,
        "embedder_settings": embedder_settings,
        "file_list_hash": files_hash,
        "n_files": len(paths),
        "n_windows": stats.count,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(npz_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **stats.to_arrays())
    write_json_atomic(meta_path, meta)
    log.info("reference statistics computed and cached at %s (%d windows)", npz_path, stats.count)
    return stats, {**meta, "cache_hit": False, "cache_path": str(npz_path)}


def load_or_compute_arrays(
    cache_dir: str | os.PathLike, kind: str, key: dict[str, Any], compute: Callable[[], dict[str, np.ndarray]]
) -> tuple[dict[str, np.ndarray], bool]:
    """Arrays cached as ``<cache_dir>/<kind>-<hash of key>.npz`` (no pickles); ``compute()`` only on a miss.

    ``key`` (JSON-able) must name everything the arrays depend on (e.g. codec settings, embedder settings and
    the file-list hash). Returns (arrays, cache hit).
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{kind}-{digest}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as stored:
            log.info("%s reused from %s", kind, path)
            return dict(stored), True
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return arrays, False
