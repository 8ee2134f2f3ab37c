"""A Ray session for the data stages: reuse a running one, or start a small local one and stop it afterwards."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

log = logging.getLogger(__name__)

OBJECT_STORE_BYTES = 512 * 1024**2


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@contextlib.contextmanager
def ray_session(num_cpus: int, num_gpus: int = 0) -> Iterator[None]:
    """Yield inside an initialised Ray; shut it down afterwards only if this call started it."""
    import ray

    if ray.is_initialized():
        yield
        return
    log.info("starting a local Ray session (%d CPUs, %d GPUs)", num_cpus, num_gpus)
    ray.init(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        ignore_reinit_error=True,
        log_to_driver=True,
    )
    try:
        yield
    finally:
        ray.shutdown()
