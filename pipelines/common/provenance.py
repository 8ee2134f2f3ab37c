"""Provenance recorded beside every stage output: what ran, on which code, with which params."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata
from typing import Any


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions(
    names: tuple[str, ...] = ("torch", "numpy", "pyarrow", "transformers", "ray"),
) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance(stage: str, params: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A JSON-ready record: stage, UTC time, git commit, python and key package versions, params used."""
    record: dict[str, Any] = {
        "stage": stage,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }
    if params is not None:
        record["params"] = params
    record.update(extra)
    return record
