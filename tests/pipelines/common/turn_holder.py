"""Hold a checkout's CPU turn (pipelines.common.cpu_turn) from another process, as a stage of a parallel experiment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

HOLD = """
import sys, time
from pipelines.common.cpu_turn import cpu_turn
with cpu_turn("train"):
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
"""


def under_dvc(monkeypatch, dvc_root: Path) -> Path:
    """Make this process look like a stage DVC runs for ``dvc_root`` (``$DVC_ROOT``), with the CPU turn on."""
    monkeypatch.setenv("DVC_ROOT", str(dvc_root))
    monkeypatch.delenv("FLOWJAM_CPU_TURN", raising=False)
    return dvc_root


def hold_turn(dvc_root: Path, seconds: float, experiment: str = "q-other") -> subprocess.Popen:
    """A child process that takes ``dvc_root``'s CPU turn as stage ``train`` of ``experiment`` and keeps it for
    ``seconds``; returns once the child holds it."""
    env = {
        **os.environ,
        "DVC_ROOT": str(dvc_root),
        "DVC_EXP_NAME": experiment,
        "PYTHONPATH": str(REPO),
    }
    env.pop("FLOWJAM_CPU_TURN", None)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(seconds)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child
