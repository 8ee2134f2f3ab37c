"""Ray for the data and training stages: a private local instance (default) or an existing cluster.

``ray.address`` (params) picks: ``""`` starts a private local instance sized by the caller and stops it afterwards;
``auto`` or ``host:port`` connects to a running cluster (whose resources are its own: nothing is requested at
init, every actor/worker asks for its CPUs/GPUs). ``RAY_ADDRESS`` in the environment counts when ``ray.address``
is empty. On a multi-node cluster, paths that workers read or write must be on storage every node reaches:
:func:`check_reachable` proves it before any work starts (a marker written by the driver, looked for on each node).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

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


def resolve_address(address: str | None = "") -> str:
    """``ray.address`` if set, else ``RAY_ADDRESS``, else ``""`` (a private local instance)."""
    return (address or "").strip() or os.environ.get("RAY_ADDRESS", "").strip()


@contextlib.contextmanager
def ray_session(num_cpus: int, num_gpus: int = 0, address: str | None = "") -> Iterator[None]:
    """Yield inside an initialised Ray; shut it down afterwards only if this call started or joined it.

    ``num_cpus``/``num_gpus`` size a private local instance only; a cluster (``address`` or ``RAY_ADDRESS``) is
    joined as it is.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    target = resolve_address(address)
    if target:
        log.info("connecting to the Ray cluster at %s", target)
        ray.init(address=target, log_to_driver=True)
    else:
        log.info("starting a local Ray session (%d CPUs, %d GPUs)", num_cpus, num_gpus)
        ray.init(
            address="local",
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=False,
            object_store_memory=OBJECT_STORE_BYTES,
            log_to_driver=True,
        )
    try:
        yield
    finally:
        ray.shutdown()


def cluster_gpus() -> int:
    """GPUs of the whole running Ray instance (every node), not of this machine."""
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def cluster_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 1))


def alive_nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def is_uri(path: str) -> bool:
    return "://" in str(path)


def _filesystem(path: str):
    """(pyarrow filesystem, path inside it) for a local path or a URI that pyarrow understands (s3://, gs://...)."""
    import pyarrow.fs

    if is_uri(path):
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), str(Path(path).resolve())


def _exists(target: str) -> bool:
    if not is_uri(target):
        return os.path.exists(target)
    import pyarrow.fs

    fs, inner = _filesystem(target)
    return fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound


def _blind_nodes(target: str) -> tuple[list[str], int]:
    """(nodes of the cluster that do not see ``target``, number of nodes)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = alive_nodes()
    probe = ray.remote(num_cpus=0)(_exists)
    refs = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
            target
        )
        for n in nodes
    ]
    seen = ray.get(refs)
    return [
        n.get("NodeManagerAddress", n["NodeID"]) for n, ok in zip(nodes, seen, strict=True) if not ok
    ], len(nodes)


def _refuse(what: str, blind: list[str], n_nodes: int, key: str) -> None:
    raise RuntimeError(
        f"{key}: {what} is not visible from node(s) {blind} of this {n_nodes}-node Ray cluster; set {key} to a "
        "shared filesystem path mounted on every node, or a URI pyarrow understands (e.g. s3://bucket/dir)"
    )


def _absolute(path: str | os.PathLike) -> str:
    return str(path) if is_uri(str(path)) else str(Path(path).resolve())


def check_reachable(path: str | os.PathLike, key: str) -> None:
    """On a multi-node cluster, raise unless every node sees the directory ``path`` (created if needed).

    A marker file written by the driver is looked for on each node. ``key`` names the param that sets the path.
    Does nothing on a single node.
    """
    if len(alive_nodes()) <= 1:
        return
    path = _absolute(path)
    marker = f"{path.rstrip('/')}/.flowjam-reach-{uuid.uuid4().hex}"
    if is_uri(path):
        fs, root = _filesystem(path)
        fs.create_dir(root, recursive=True)
        with fs.open_output_stream(_filesystem(marker)[1]) as out:
            out.write(b"flowjam")
    else:
        Path(path).mkdir(parents=True, exist_ok=True)
        Path(marker).write_bytes(b"flowjam")
    try:
        blind, n_nodes = _blind_nodes(marker)
    finally:
        if is_uri(path):
            fs.delete_file(_filesystem(marker)[1])
        else:
            Path(marker).unlink()
    if blind:
        _refuse(path, blind, n_nodes, key)


def check_visible(path: str | os.PathLike, key: str) -> None:
    """On a multi-node cluster, raise unless every node sees the existing file ``path`` (nothing is written)."""
    if len(alive_nodes()) <= 1:
        return
    path = _absolute(path)
    blind, n_nodes = _blind_nodes(path)
    if blind:
        _refuse(path, blind, n_nodes, key)


def require_storage(storage: str, key: str = "ray.storage") -> None:
    """On a multi-node cluster, an empty ``storage`` (node-local default) is an error; else check it is reachable."""
    nodes = alive_nodes()
    if len(nodes) > 1 and not storage:
        raise RuntimeError(
            f"params.yaml: {key} is empty but the Ray cluster has {len(nodes)} nodes; set {key} to a shared "
            "filesystem path mounted on every node or a URI pyarrow understands (e.g. s3://bucket/flowjam)"
        )
    if storage:
        check_reachable(storage, key)
