"""Run records: what ran, when, where, on which code and with which params — kept apart from the stage outputs.

A stage output holds only what is a function of its inputs, code and params, so that identical work gives
byte-identical files and DVC recognises it (no needless reruns downstream, and its run cache can serve it). The
facts of one run (UTC time, wall seconds, git commit, host, package versions, the params used, counts and
durations the stage reports) go to a run record that no stage depends on and git ignores::

    from pipelines.common.provenance import write_run_record

    write_run_record("encode", {"codec": ..., "encode": ...}, shards=12, clips_written=96)

writes ``provenance/encode.json`` under the repository DVC runs the stage for (``pipelines.common.workspace``),
or ``provenance/exps/<experiment>/encode.json`` inside a ``dvc exp run`` (queued and temporary experiments
included: their records survive the throw-away workspace). ``FLOWJAM_PROVENANCE_DIR`` moves the folder (tests).
The record is rewritten by each run of the stage; the committed ``dvc.lock`` is what pins the outputs.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from model.runtime.atomic_io import write_json_atomic
from pipelines.common.workspace import experiment, in_dvc_root

log = logging.getLogger(__name__)

RECORDS_DIR = "provenance"
RECORDS_ENV = "FLOWJAM_PROVENANCE_DIR"
_STARTED = time.time()  # the stage modules import this first thing: the stage's wall clock starts here


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions(
    names: tuple[str, ...] = ("torch", "numpy", "pyarrow", "transformers", "ray", "dvc"),
) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance(stage: str, params: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A JSON-ready record: stage, UTC time, wall seconds since the stage started, git commit, host, python and
    key package versions, the DVC experiment (if any), the params used, then ``extra`` (counts, durations)."""
    record: dict[str, Any] = {
        "stage": stage,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - _STARTED, 2),
        "git_commit": git_commit(),
        "host": platform.node(),
        "command": sys.argv,
        "python": platform.python_version(),
        "packages": package_versions(),
        "experiment": experiment(),
    }
    if params is not None:
        record["params"] = params
    record.update(extra)
    return record


def records_dir() -> Path:
    """Where this process's run records go (see the module docstring)."""
    root = Path(os.environ[RECORDS_ENV]) if os.environ.get(RECORDS_ENV) else in_dvc_root(RECORDS_DIR)
    exp = experiment()
    return root / "exps" / exp["name"] if exp else root


def record_path(stage: str) -> Path:
    """``<records_dir>/<stage>.json``: the record of the latest run of ``stage`` here."""
    return records_dir() / f"{stage}.json"


def write_run_record(stage: str, params: dict[str, Any] | None = None, **facts: Any) -> Path:
    """Write :func:`provenance` of this run to :func:`record_path`; returns the path.

    Call it once, after the stage's outputs are written. A record that cannot be written is logged, never fatal:
    the outputs are complete and DVC must still commit them.
    """
    path = record_path(stage)
    try:
        write_json_atomic(path, provenance(stage, params, **facts))
    except OSError as exc:
        log.warning("%s: run record not written (%s); the stage outputs are complete", path, exc)
    return path
