"""One CPU-bound stage at a time per checkout: experiments that DVC runs side by side take turns for the cores.

A stage that computes with torch on the CPU (``train`` in-process, ``generate``) already spreads each operation over
every core (torch's intra-op threads, OpenMP). Two of them side by side — ``dvc queue start -j 2``, or a
``dvc exp run`` while a queued experiment trains — oversubscribe the cores, and libgomp's threads, which spin
while they wait for each other, then lose their time slices to the other process's spinning threads. Measured on
the 2-core build machine (docs/experiments.md): two generate stages side by side took 507 and 512 s where one
alone takes 86 s; one after the other, 172 s for both.

So each such stage takes its turn: an exclusive ``flock`` on ``<checkout>/.dvc/tmp/flowjam-cpu.lock``, held while
it computes. The checkout is ``$DVC_ROOT``, which DVC sets for every stage command to the user's repository — the
same for the workspace and for every queued or temporary experiment — so all experiments of one checkout share
the lock. The lock belongs to the open file, so it is released when the process ends in any way (kill -9
included) and a crashed stage never blocks the next. Thread counts are left as they are: a stage's outputs stay
byte-identical whether or not another experiment ran beside it (a thread count chosen by the load would not; 1 and
2 threads gave different float rounding in 6 of 16 generated clips).

No turn is taken outside DVC (no ``$DVC_ROOT``: a stage run by hand, the tests), nor for work that is not on the
CPU (a CUDA device). ``FLOWJAM_CPU_TURN=off`` switches it off, e.g. on a machine whose experiments are pinned to
separate cores by other means.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipelines.common.workspace import DVC_ROOT_ENV, EXP_NAME_ENV

log = logging.getLogger(__name__)

SWITCH_ENV = "FLOWJAM_CPU_TURN"  # "off" disables the turn
LOCK_NAME = "flowjam-cpu.lock"


@dataclass
class Turn:
    """What taking the turn cost: the lock file (None when no turn was taken) and the seconds waited for it."""

    lock: Path | None = None
    waited_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"lock": str(self.lock) if self.lock else None, "waited_s": round(self.waited_s, 2)}


def lock_path() -> Path | None:
    """The checkout's lock file, or None when stages run outside DVC or the turn is switched off."""
    root = os.environ.get(DVC_ROOT_ENV)
    if not root or os.environ.get(SWITCH_ENV, "").lower() == "off":
        return None
    return Path(root) / ".dvc" / "tmp" / LOCK_NAME


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it (stage, experiment, pid); '' when unreadable."""
    try:
        text = os.pread(fd, 4096, 0).decode()
        info = json.loads(text)
        where = f" in experiment {info['experiment']}" if info.get("experiment") else ""
        return f"stage {info['stage']}{where}, pid {info['pid']}"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


@contextlib.contextmanager
def cpu_turn(stage: str, on_cpu: bool = True) -> Iterator[Turn]:
    """Hold this checkout's CPU turn for the block (waiting for it when another stage holds it).

    ``on_cpu`` False (the work runs on a GPU) or no lock path (:func:`lock_path`) take no turn."""
    path = lock_path() if on_cpu else None
    if path is None:
        yield Turn()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        start = time.monotonic()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            log.warning(
                "%s: another CPU-bound stage holds this checkout's cores (%s); waiting for its turn (%s)",
                stage,
                holder or "holder unknown",
                path,
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.info("%s: got the CPU after %.0f s", stage, time.monotonic() - start)
        waited = time.monotonic() - start
        info = {"stage": stage, "experiment": os.environ.get(EXP_NAME_ENV), "pid": os.getpid()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield Turn(path, waited)
    finally:
        os.close(fd)  # releases the lock
