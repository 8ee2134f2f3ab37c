"""Paths that outlive a DVC experiment's temporary workspace: the repository that DVC runs the experiment for.

``dvc exp run --queue`` and ``--temp`` run each stage in a throw-away copy of the repository, which holds the
committed files and the DVC outputs checked out from the cache, but nothing git ignores and DVC does not track.
DVC tells each stage command the repository it works for in ``DVC_ROOT`` (the user's checkout, also for a queued
experiment; the repository root for ``dvc repro``). Files that must survive the experiment and that no stage
depends on — training checkpoints (``train.ckpt_dir``), run records (``pipelines.common.provenance``) — are
resolved against that root, so a queued run of an extended training resumes from the user's ``checkpoints/``
and its run record lands where the user looks for it.
"""

from __future__ import annotations

import os
from pathlib import Path

DVC_ROOT_ENV = "DVC_ROOT"  # set by DVC for every stage command (dvc/stage/run.py, dvc/repo/experiments/queue)
EXP_NAME_ENV = "DVC_EXP_NAME"  # set by `dvc exp run` (workspace, --temp, --queue)
EXP_BASELINE_ENV = "DVC_EXP_BASELINE_REV"


def dvc_root() -> Path:
    """The repository the running stage works for: ``$DVC_ROOT``, else the current directory."""
    return Path(os.environ.get(DVC_ROOT_ENV) or os.getcwd()).resolve()


def in_dvc_root(path: str | os.PathLike) -> Path:
    """``path`` as is when absolute, else under :func:`dvc_root` (the user's checkout in an experiment)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else dvc_root() / p


def experiment() -> dict[str, str] | None:
    """The DVC experiment this process runs in (name, baseline commit, its workspace), or None outside one."""
    name = os.environ.get(EXP_NAME_ENV)
    if not name:
        return None
    return {
        "name": name,
        "baseline_rev": os.environ.get(EXP_BASELINE_ENV, ""),
        "workspace": str(Path.cwd()),
    }
