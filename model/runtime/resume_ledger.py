"""Which files of a resumable job are finished, kept beside (never inside) the job's output folder.

A stage whose DVC output is persisted (``persist: true``) keeps the files a killed run finished and redoes only
the rest. What it needs to know for that — the settings the files were made under, and that each file is still
the one it wrote — depends on the run (file times), so it must not sit inside the output, whose content DVC
hashes: identical work must give identical bytes. The ledger is a JSON-lines file, ``<out_dir>.resume.jsonl``:
the first line ``{"fingerprint": ...}``, then one ``{"file": name, "size": ..., "mtime_ns": ...}`` per finished
file, appended as each is written (a torn last line from a kill is ignored). A file counts as finished only when
the ledger's fingerprint is the job's and the file's size and mtime are those recorded: a file that DVC checked
out, or that a run under other settings wrote, is redone.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from model.runtime.atomic_io import atomic_path

log = logging.getLogger(__name__)

SUFFIX = ".resume.jsonl"


def ledger_path(out_dir: str | os.PathLike) -> Path:
    """``<out_dir>.resume.jsonl``, the sibling of the output folder."""
    out = Path(out_dir)
    return out.with_name(out.name + SUFFIX)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class ResumeLedger:
    """The finished files of ``out_dir`` under ``fingerprint`` (any JSON-able value naming the settings)."""

    def __init__(self, out_dir: str | os.PathLike, fingerprint: object):
        self.out_dir = Path(out_dir)
        self.path = ledger_path(out_dir)
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self._finished: dict[str, tuple[int, int]] = {}

    def open(self) -> set[str]:
        """Read the ledger; returns the names of the files that are finished under this fingerprint and unchanged
        since. Starts a fresh ledger (fingerprint and those files only) for the appends that follow."""
        recorded: dict[str, tuple[int, int]] = {}
        if self.path.is_file():
            lines = self.path.read_text().splitlines()
            try:
                same = bool(lines) and json.loads(lines[0]).get("fingerprint") == self.fingerprint
            except (json.JSONDecodeError, AttributeError):
                same = False
            for line in lines[1:] if same else []:
                try:
                    entry = json.loads(line)
                    recorded[entry["file"]] = (int(entry["size"]), int(entry["mtime_ns"]))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a line torn by a kill
        self._finished = {
            name: sig for name, sig in recorded.items() if _signature(self.out_dir / name) == sig
        }
        with atomic_path(self.path) as tmp:
            tmp.write_text(
                "".join(
                    json.dumps(entry) + "\n"
                    for entry in [{"fingerprint": self.fingerprint}]
                    + [self._entry(name, sig) for name, sig in sorted(self._finished.items())]
                )
            )
        return set(self._finished)

    @property
    def names(self) -> set[str]:
        """The files finished so far (after :meth:`open`: those kept from earlier runs)."""
        return set(self._finished)

    def finished(self, name: str) -> None:
        """Record ``out_dir/name`` (just written, complete) as finished."""
        sig = _signature(self.out_dir / name)
        if sig is None:
            raise FileNotFoundError(f"{self.out_dir / name}: cannot record a file that does not exist")
        self._finished[name] = sig
        with self.path.open("a") as fh:
            fh.write(json.dumps(self._entry(name, sig)) + "\n")

    @staticmethod
    def _entry(name: str, sig: tuple[int, int]) -> dict[str, object]:
        return {"file": name, "size": sig[0], "mtime_ns": sig[1]}
