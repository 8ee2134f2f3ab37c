"""The studio's model picker: the model given at start (``models/final``) and the exported models of the DVC
experiments of this workspace, each with its headline metrics (``reports/metrics.json``: fad, clap, ccs).

"Present in the workspace" means: ``dvc exp show`` (run in the repository root) lists the experiment, i.e. it was
run here or brought here with ``dvc exp pull``, on top of the commit checked out now; it did not fail; and its
model directory (``train.out_dir`` of that experiment's params) is complete in the local DVC cache, so it can be
loaded without a ``dvc pull`` and without touching the workspace (no ``dvc exp apply``). Its files are linked from
the cache into the studio's own folder when it is first picked. Experiments whose model is not in the cache are
left out with a log line saying how to get it. A model that is listed twice (same DVC hash) is listed once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HEADLINE = ("fad", "clap", "ccs")
SHOW_TIMEOUT_S = 120


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the picker. ``path``: a local model directory, or None for an experiment's model that is
    linked from the DVC cache on first use (``files``: relpath -> cache file)."""

    key: str
    label: str
    path: Path | None
    metrics: dict[str, float]
    rev: str = ""
    files: dict[str, Path] = field(default_factory=dict)

    def describe(self) -> str:
        """``label`` with its headline metrics, for the dropdown and the page."""
        shown = [f"{k.upper()} {self.metrics[k]:.3f}" for k in HEADLINE if k in self.metrics]
        return f"{self.label} — {', '.join(shown)}" if shown else f"{self.label} — no metrics"


def headline(metrics: Any) -> dict[str, float]:
    """The finite headline numbers of a metrics.json tree (the chosen-seed fad, clap, ccs)."""
    if not isinstance(metrics, dict):
        return {}
    out = {}
    for key in HEADLINE:
        value = metrics.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            out[key] = float(value)
    return out


def read_metrics(path: Path) -> dict[str, float]:
    try:
        return headline(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError):
        return {}


def list_models(
    model_dir: str | os.PathLike, repo_root: str | os.PathLike, metrics_file: str = "reports/metrics.json"
) -> list[ModelChoice]:
    """The picker's entries: ``model_dir`` first, then each present experiment (see the module docstring)."""
    root = Path(repo_root).resolve()
    first = Path(model_dir).resolve()
    in_repo = first.is_relative_to(root)
    label = str(first.relative_to(root)) if in_repo else str(first)
    choices = [
        ModelChoice(
            key="start",
            label=f"{label} (this workspace)" if in_repo else label,
            path=first,
            metrics=read_metrics(root / metrics_file) if in_repo else {},
        )
    ]
    seen = {_dir_hash_of_workspace(root, first)} - {None}
    for choice in experiment_models(root, metrics_file):
        if choice.key not in seen:
            seen.add(choice.key)
            choices.append(choice)
    return choices


def _dir_hash_of_workspace(root: Path, model_dir: Path) -> str | None:
    """The DVC hash recorded in dvc.lock for ``model_dir`` (so an experiment equal to it is not listed twice)."""
    lock = root / "dvc.lock"
    if not lock.is_file() or not model_dir.is_relative_to(root):
        return None
    import yaml

    rel = model_dir.relative_to(root).as_posix()
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    for stage in stages.values():
        for out in stage.get("outs", []):
            if out.get("path") == rel and "md5" in out:
                return str(out["md5"])
    return None


def experiment_rows(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """``dvc exp show --json`` rows as ("commit" | "exp", row): the commit checked out and each experiment on
    top of it; [] when ``root`` is no DVC repository or dvc fails (logged)."""
    if not (root / ".dvc").is_dir():
        return []
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json"]
    try:
        done = subprocess.run(
            cmd, cwd=root, capture_output=True, text=True, timeout=SHOW_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("dvc exp show failed (%s); the picker lists only the model given at start", exc)
        return []
    if done.returncode != 0:
        log.warning("dvc exp show failed: %s", done.stderr.strip().splitlines()[-1:] or done.returncode)
        return []
    rows = []
    for entry in json.loads(done.stdout or "[]"):
        if entry.get("rev") != "workspace":
            rows.append(("commit", entry))
        for exp in entry.get("experiments") or []:
            rows.extend(("exp", rev) for rev in exp.get("revs") or [])
    return rows


def experiment_models(root: Path, metrics_file: str) -> list[ModelChoice]:
    """A ``ModelChoice`` per row of ``dvc exp show`` whose model directory is complete in the local cache."""
    rows = experiment_rows(root)
    if not rows:
        return []
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        odb = repo.cache.local
        out = []
        for kind, row in rows:
            data, name, rev = row.get("data") or {}, row.get("name") or "", row.get("rev", "")
            if row.get("error") or not data:
                continue
            params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
            out_dir = ((params.get("train") or {}).get("out_dir")) or "models/final"
            dir_hash = ((data.get("outs") or {}).get(out_dir) or {}).get("hash")
            label = f"{kind} {name} ({rev[:7]})" if name else f"{kind} {rev[:7]}"
            files = _cached_files(odb, dir_hash)
            if not files or "config.json" not in files:
                log.info(
                    "%s: its model %s is not in the local DVC cache (dvc exp pull / dvc pull)", label, out_dir
                )
                continue
            metrics = ((data.get("metrics") or {}).get(metrics_file) or {}).get("data")
            out.append(ModelChoice(dir_hash, label, None, headline(metrics), rev=rev, files=files))
    return out


def _cached_files(odb: Any, dir_hash: str | None) -> dict[str, Path]:
    """relpath -> cache file of a directory output, or {} when its manifest or any file is not in the cache."""
    if not dir_hash or not dir_hash.endswith(".dir") or not odb.exists(dir_hash):
        return {}
    try:
        manifest = json.loads(Path(odb.oid_to_path(dir_hash)).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    files = {}
    for item in manifest:
        if not odb.exists(item["md5"]):
            return {}
        files[item["relpath"]] = Path(odb.oid_to_path(item["md5"]))
    return files


def materialise(choice: ModelChoice, into: Path) -> Path:
    """The model directory of ``choice``: its own path, or ``into/<hash>/`` with its files linked from the cache."""
    if choice.path is not None:
        return choice.path
    dest = into / choice.key.removesuffix(".dir")
    for rel, src in choice.files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.symlink_to(src)
        except FileExistsError:  # linked before (or by a concurrent render)
            pass
    return dest
