"""Training checkpoints: save, rotate, and check a resume.

Checkpoints: one dict per file (``torch.save``), written atomically into the run directory
(``train.ckpt_dir``/``run-<hash>``, see ``model.training.setup.run_dir``) as ``step-NNNNNNN.pt`` (the newest ``keep`` are kept) plus a rolling ``last.pt``. Each records the
``fingerprint`` of the settings that must not change across a resume; :func:`check_resumable` refuses a
mismatch with a message that says how to start fresh.

The final artefact that generation loads is written by :mod:`model.flow.trained`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from model.runtime.atomic_io import atomic_path
from model.runtime.errors import InputError

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
LAST = "last.pt"
STEP_FILE = re.compile(r"^step-(\d{7,})\.pt$")


class CheckpointMismatchError(InputError, RuntimeError):
    """last.pt was written by a run with different settings."""


def step_file(step: int) -> str:
    return f"step-{step:07d}.pt"


class CheckpointDir:
    """``last.pt`` + periodic ``step-NNNNNNN.pt`` files in one directory, the newest ``keep`` periodic ones kept."""

    def __init__(self, directory: str | os.PathLike, keep: int):
        if keep < 1:
            raise ValueError(f"params.yaml: train.keep must be >= 1, got {keep}")
        self.dir = Path(directory)
        self.keep = keep

    @property
    def last(self) -> Path:
        return self.dir / LAST

    def periodic(self) -> list[Path]:
        """Periodic checkpoint files, oldest first."""
        if not self.dir.exists():
            return []
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := STEP_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write ``state`` as step-NNNNNNN.pt and last.pt (each atomically), then prune old periodic files."""
        path = self.dir / step_file(step)
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        with atomic_path(self.last) as tmp:
            # a hard link: last.pt costs no second write (pruning the periodic name later leaves it intact)
            tmp.unlink()
            try:
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)
        for old in self.periodic()[: -self.keep]:
            old.unlink(missing_ok=True)  # another experiment training the same run may have pruned it
        logger.info("checkpoint step %d -> %s", step, path)
        return path

    def remove_partial_writes(self) -> None:
        """Delete temporaries a killed save left behind (``.<name>.*.tmp.pt``, see model.runtime.atomic_io)."""
        if self.dir.exists():
            for tmp in self.dir.glob(".*.tmp.pt"):
                logger.info("removing %s, left by an interrupted checkpoint write", tmp)
                tmp.unlink()

    def load_last(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The state in last.pt, or None when there is none."""
        return self._load(self.last, map_location) if self.last.exists() else None

    def load_within(
        self, step: int, map_location: str | torch.device = "cpu"
    ) -> tuple[Path, dict[str, Any]] | None:
        """The newest periodic checkpoint at or before ``step`` and its state, or None.

        For a run shorter than the one that last wrote here (experiments share the run directory: an extended run
        moves last.pt past the baseline's ``train.steps``); the final step of every run is saved, so a run that
        reached ``step`` before finds its own end state as long as ``train.keep`` kept it."""
        within = [p for p in self.periodic() if int(STEP_FILE.match(p.name).group(1)) <= step]
        return (within[-1], self._load(within[-1], map_location)) if within else None

    def _load(self, path: Path, map_location: str | torch.device) -> dict[str, Any]:
        # our own files, holding numpy/python RNG states that weights_only refuses
        state = torch.load(path, map_location=map_location, weights_only=False)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointMismatchError(
                f"{path}: checkpoint format {state.get('format')!r}, this code writes {CHECKPOINT_FORMAT}; "
                f"delete {self.dir} (or set train.resume: false) to start fresh"
            )
        return state

    def clear(self) -> None:
        """Remove last.pt and the periodic files (a fresh start); other files are left alone."""
        for path in [*self.periodic(), self.last]:
            if path.exists():
                path.unlink()


def fingerprint_diff(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts, as 'key: saved -> current'."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            out += fingerprint_diff(
                saved.get(key, "<absent>"), current.get(key, "<absent>"), f"{prefix}{key}."
            )
        return out
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} -> {current!r}"]


def check_resumable(state: dict[str, Any], fingerprint: dict[str, Any], path: Path) -> None:
    """Raise :class:`CheckpointMismatchError` when ``state`` was written with another fingerprint."""
    saved = json.loads(json.dumps(state.get("fingerprint")))
    current = json.loads(json.dumps(fingerprint))
    diff = fingerprint_diff(saved, current)
    if diff:
        raise CheckpointMismatchError(
            f"{path} comes from a run with different settings:\n  " + "\n  ".join(diff) + "\n"
            f"To start fresh, delete it (rm -r {path.parent}) or run with train.resume: false "
            "(e.g. `dvc exp run -S train.resume=false`), which clears the old checkpoints first; "
            "to keep the old run, move the directory away or point train.ckpt_dir elsewhere."
        )
