"""Memory figures for the bounded-memory tests.

Peak RSS (VmHWM) counts the pages of mapped files too — torch's and numpy's shared libraries among them — and how
many of those a process maps depends on the page cache, not on the process: the kernel maps every cached page
around a fault, so the same import costs 270 MiB of RSS in a warm, long-installed environment and 360 MiB right
after a fresh ``pip install`` (measured on the build machine, identical packages). Anonymous memory (RssAnon:
heap, tensors, buffers) is what a process itself holds; the tests bound it absolutely and bound total RSS by its
growth with the data, which compares processes under the same page cache.
"""

from __future__ import annotations

import threading
from pathlib import Path

# prepended to a ``python -c`` script: samples this process's RssAnon every 5 ms in a daemon thread
ANON_PEAK_PRELUDE = """
import threading as _threading, time as _time
_ANON = [0]
def _sample_anon():
    while True:
        for _line in open("/proc/self/status"):
            if _line.startswith("RssAnon:"):
                _ANON[0] = max(_ANON[0], int(_line.split()[1]) * 1024)
        _time.sleep(0.005)
_threading.Thread(target=_sample_anon, daemon=True).start()
"""
# appended to it: prints "<peak RSS bytes> <peak anonymous bytes>" as the last line
PRINT_PEAKS = """
for _line in open("/proc/self/status"):
    if _line.startswith("RssAnon:"):
        _ANON[0] = max(_ANON[0], int(_line.split()[1]) * 1024)
    if _line.startswith("VmHWM:"):
        _HWM = int(_line.split()[1]) * 1024
print(_HWM, _ANON[0])
"""


def status_mib(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM (peak) and RssAnon of a process, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM", "RssAnon")}


class AnonPeak:
    """The highest RssAnon (MiB) of process ``pid`` while the ``with`` block runs, sampled every 5 ms."""

    def __init__(self, pid: int):
        self.pid, self.mib = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.mib = max(self.mib, status_mib(self.pid)["RssAnon"])
            self._stop.wait(0.005)

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.mib = max(self.mib, status_mib(self.pid)["RssAnon"])
