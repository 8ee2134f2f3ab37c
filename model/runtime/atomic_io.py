"""Atomic file and directory writes: write to a temporary sibling, then rename over the target.

A killed process leaves either the old file or the new one, never half of one, so a rerun can trust
every file it finds. The writers are also deterministic: the same content gives the same bytes (no temporary
names, times or hash-map orders inside the files), so DVC sees identical work as unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@functools.cache
def _umask() -> int:
    """The process umask, read once (os.umask can only be read by setting it, so not at import time)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary keeps the target's suffix so that writers choosing a format by extension
    (soundfile, pyarrow) still work. On an exception the temporary is removed and the target untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename the finished directory ``new`` onto ``target``. An old ``target`` is first moved aside and removed
    only after the rename, so a kill leaves the old or the new directory in place (plus, at worst, a hidden
    ``.<name>.old-<pid>`` to delete), never a half-written one."""
    new, target = Path(new), Path(target)
    if not new.is_dir():
        raise FileNotFoundError(f"{new}: no directory to move onto {target}; {target} is left as it was")
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, first_wins: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; on success it becomes ``path`` (:func:`replace_dir`).

    On an exception the temporary is removed and ``path`` untouched. ``first_wins``: when another process
    published ``path`` meanwhile (workers filling the same cache), keep theirs and drop ours.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the directory the usual mode
        if first_wins:
            try:
                os.rename(tmp, target)  # fails when target exists and is not empty: the other one won
            except OSError:
                if not target.is_dir():
                    raise
        else:
            replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_parquet_atomic(path: str | os.PathLike, table: Any, **kwargs: Any) -> None:
    """Write a pyarrow Table (or a polars DataFrame) to Parquet, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = table.to_arrow()
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def write_torch_atomic(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save(obj)`` atomically. Saved through a file object: given a path, torch names the archive's inner
    folder after the file (here a random temporary name), so identical objects would give different bytes."""
    import torch

    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        torch.save(obj, fh)


def write_safetensors_atomic(
    path: str | os.PathLike, tensors: dict[str, Any], metadata: dict[str, str] | None = None
) -> None:
    """A safetensors file of ``tensors`` (name -> contiguous CPU tensor) atomically, its JSON header in sorted key
    order: safetensors writes ``metadata`` in hash-map order, which differs from process to process."""
    import struct

    from safetensors.torch import save

    blob = save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.dumps(
        json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8 bytes so that tensors stay aligned
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        fh.write(struct.pack("<Q", len(header)))
        fh.write(header)
        fh.write(memoryview(blob)[8 + n :])


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
