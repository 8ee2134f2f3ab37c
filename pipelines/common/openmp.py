"""Importing this module makes the process's OpenMP worker threads sleep while they wait, instead of spinning.

torch's OpenMP runtime (libgomp) lets a worker that waits for the next parallel region or at a barrier spin on
its core for a while before it sleeps. That costs nothing on an idle machine, but when anything else wants a core
(the batch-prefetch thread, another process) the spinning thread holds it while the thread it waits for cannot
run: on the 2-core build machine under load the train stage's steps took 10-100x longer (docs/benchmarks.md).
``OMP_WAIT_POLICY=PASSIVE`` makes waiting workers sleep. libgomp reads the policy once, when torch loads it, so a
stage imports this module before anything that imports torch; a policy set in the environment wins.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
