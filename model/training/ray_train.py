"""The Ray Train launcher: the same training loop in one process per worker, locally or on a Ray cluster.

One worker on CPU runs in-process with :data:`model.training.context.SINGLE` (no torch.distributed, no Ray). More
workers, or a GPU, run the same loop (:func:`model.training.setup.run_training`) under
``ray.train.torch.TorchTrainer``: Ray starts one process per worker, sets up the torch.distributed process group
(gloo on CPU, nccl on GPU), and ``ray.train.torch.prepare_model`` wraps the objective in DistributedDataParallel,
which averages gradients in ``backward``. Every rank draws its own disjoint slice of each epoch; rank 0 alone
validates, logs and writes checkpoints.

Fault tolerance: every checkpoint that rank 0 writes is also reported to Ray Train, which keeps it in
``ray.storage`` (a shared path or a pyarrow URI; default ``<train.ckpt_dir>/ray``). When a worker dies, Ray Train
restarts the worker group (up to :data:`MAX_FAILURES` times) and each rank resumes from that checkpoint, so the
result equals an uninterrupted run. At the end rank 0 reports the exported model and its DVCLive files, which the
driver copies into ``train.out_dir`` and the live directory: no node but the driver's needs those paths.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.data.store import check_current
from model.runtime.atomic_io import atomic_path
from model.training.checkpoints import LAST, STEP_FILE
from model.training.config import TrainJob
from model.training.context import DistContext
from model.training.loop import Trainer
from model.training.setup import run_training

logger = logging.getLogger(__name__)

MAX_FAILURES = 3  # worker-group restarts per run before Ray Train gives up
SCAN_METRIC = "scan_backend"
REPORT_INFO = (
    "flowjam.json"  # what a reported checkpoint holds: {"run": run dir name, "step": n} or {"final": true}
)


def ray_prepare(module: nn.Module, device: torch.device) -> nn.Module:
    """Move to this worker's device and wrap in DDP (when there is more than one worker)."""
    import ray.train.torch

    return ray.train.torch.prepare_model(module, move_to_device=device, parallel_strategy="ddp")


def _local_step(trainer: Trainer) -> int:
    periodic = trainer.ckpt.periodic()
    return int(STEP_FILE.match(periodic[-1].name).group(1)) if periodic and trainer.ckpt.last.exists() else -1


class RayTrainer(Trainer):
    """The training loop, reporting each checkpoint to Ray Train and resuming from Ray's latest one."""

    def restore(self) -> dict[str, Any] | None:
        import ray.train

        reported = ray.train.get_checkpoint() if self.cfg.resume else None
        if reported is not None:
            with reported.as_directory() as directory:
                info_path = Path(directory) / REPORT_INFO
                info = json.loads(info_path.read_text()) if info_path.exists() else {}
                # only a checkpoint of this run (same fingerprint) that is newer than the local files
                if info.get("run") == self.ckpt.dir.name and int(info["step"]) > _local_step(self):
                    logger.info(
                        "rank %d: resuming from Ray Train's checkpoint at step %d",
                        self.dist.rank,
                        info["step"],
                    )
                    self.ckpt.dir.mkdir(parents=True, exist_ok=True)
                    for name in (f"step-{int(info['step']):07d}.pt", LAST):
                        with atomic_path(self.ckpt.dir / name) as tmp:
                            shutil.copyfile(Path(directory) / LAST, tmp)
        return super().restore()

    def save_checkpoint(self) -> None:
        import ray.train

        super().save_checkpoint()
        metrics = {"step": self.step}
        if not self.dist.is_main:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="flowjam-report-") as tmp:
            try:
                os.link(self.ckpt.last, Path(tmp) / LAST)
            except OSError:
                shutil.copyfile(self.ckpt.last, Path(tmp) / LAST)
            (Path(tmp) / REPORT_INFO).write_text(json.dumps({"run": self.ckpt.dir.name, "step": self.step}))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _worker_loop(config: dict[str, Any]) -> None:
    """The per-worker entry point that Ray Train runs; every path in ``config["job"]`` is absolute."""
    import ray.train
    import ray.train.torch

    if Path(config["cwd"]).is_dir():  # the driver's directory, when this node has it
        os.chdir(config["cwd"])
    torch.set_num_threads(config["threads"])
    context = ray.train.get_context()
    dist = DistContext(rank=context.get_world_rank(), world_size=context.get_world_size())
    device = ray.train.torch.get_device()
    result = run_training(
        config["job"],
        dist=dist,
        device=device,
        prepare=ray_prepare,
        live_dir=config["live_dir"],
        text_encoder=config["text_encoder"],
        trainer_cls=config["trainer_cls"],
        check_store=False,
    )
    if not dist.is_main:
        ray.train.report({"step": result.step, "final": True})
        return
    # the scan backend rank 0 ran, for the driver's provenance (JSON: Ray flattens nested metrics)
    final = {"step": result.step, "final": True, SCAN_METRIC: json.dumps(result.scan)}
    with tempfile.TemporaryDirectory(prefix="flowjam-final-") as tmp:
        shutil.copytree(config["job"].train.out_dir, Path(tmp) / "model")
        if Path(config["live_dir"]).is_dir():
            shutil.copytree(config["live_dir"], Path(tmp) / "dvclive")
        (Path(tmp) / REPORT_INFO).write_text(json.dumps({"final": True, "step": result.step}))
        ray.train.report(final, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def absolute_job(job: TrainJob) -> TrainJob:
    """``job`` with every path that workers open made absolute (a worker may run in another directory)."""

    def absolute(path: str) -> str:
        return str(Path(path).resolve()) if path else path

    train = dataclasses.replace(
        job.train,
        ckpt_dir=absolute(job.train.ckpt_dir),
        out_dir=absolute(job.train.out_dir),
        init_from=absolute(job.train.init_from),
        replay=dataclasses.replace(job.train.replay, store=absolute(job.train.replay.store)),
    )
    return dataclasses.replace(
        job,
        train=train,
        shards_dir=absolute(job.shards_dir),
        stats_path=absolute(job.stats_path),
        store_dir=absolute(job.store_dir),
        text={**job.text, "path": absolute(job.text.get("path", ""))},
        codec={**job.codec, "acestep_dir": absolute(job.codec.get("acestep_dir", ""))},
    )


def _copy_into(src: Path, dst: Path) -> None:
    """Replace the files of ``dst`` by those of ``src`` (nothing to do when they are the same directory)."""
    if dst.exists() and os.path.samefile(src, dst):
        return
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.rglob("*"):
        if item.is_file():
            target = dst / item.relative_to(src)
            if target.exists() and os.path.samefile(item, target):
                continue
            with atomic_path(target) as tmp:
                shutil.copyfile(item, tmp)


def run_ray_training(
    job: TrainJob,
    storage_dir: str | os.PathLike = "",
    live_dir: str = "dvclive",
    threads_per_worker: int = 1,
    text_encoder: Any = None,
    address: str = "",
    trainer_cls: type[Trainer] = RayTrainer,
) -> dict[str, str] | None:
    """Run :func:`model.training.setup.run_training` on ``train.workers`` Ray Train workers (DDP, on GPUs with
    ``train.use_gpu``); blocks until done.

    ``address`` (``ray.address``; ``RAY_ADDRESS`` when empty) joins a cluster, else a private local instance is
    started. ``storage_dir`` (``ray.storage``) holds Ray Train's checkpoints: a shared path or pyarrow URI, required
    on a multi-node cluster; empty means ``<train.ckpt_dir>/ray``. ``text_encoder`` (picklable) replaces the one each
    worker would build from ``job.text``. Raises when workers fail more than :data:`MAX_FAILURES` times.
    Returns the scan backend rank 0 ran (``ScanChoice.as_dict()``), for the stage's provenance.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from model.runtime.ray_session import (
        available_cpus,
        check_reachable,
        cluster_gpus,
        cuda_device_count,
        is_uri,
        ray_session,
        require_storage,
        resolve_address,
    )

    workers, use_gpu = job.train.workers, job.train.use_gpu
    job = absolute_job(job)
    check_current(job.store_dir, job.shards_dir)  # here: workers need not see the shards
    live_dir = str(Path(live_dir).resolve())
    storage = (
        str(storage_dir)
        if is_uri(str(storage_dir))
        else str(Path(storage_dir or Path(job.train.ckpt_dir) / "ray").resolve())
    )
    address = resolve_address(address)
    resources = {"CPU": threads_per_worker, **({"GPU": 1} if use_gpu else {})}
    with ray_session(
        num_cpus=max(available_cpus(), workers * threads_per_worker),
        num_gpus=cuda_device_count() if use_gpu else 0,
        address=address,
    ):
        gpus = cluster_gpus()
        if use_gpu and gpus < workers:
            raise RuntimeError(
                f"params.yaml: train.use_gpu with train.workers={workers} needs {workers} GPUs, the "
                f"Ray {'cluster' if address else 'instance'} has {gpus}; lower train.workers or "
                "add GPU nodes (ray.address: a cluster started with `ray start`)"
            )
        require_storage(str(storage_dir), "ray.storage")
        check_reachable(job.store_dir, "pack.out_dir")
        if not is_uri(storage):
            Path(storage).mkdir(parents=True, exist_ok=True)
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={
                "job": job,
                "cwd": os.getcwd(),
                "threads": threads_per_worker,
                "live_dir": live_dir,
                "text_encoder": text_encoder,
                "trainer_cls": trainer_cls,
            },
            scaling_config=ScalingConfig(
                num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources
            ),
            run_config=RunConfig(
                name=f"flowjam-train-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                storage_path=storage,
                failure_config=FailureConfig(max_failures=MAX_FAILURES),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
            ),
        )
        logger.info(
            "Ray Train: %d worker(s), use_gpu=%s, checkpoints reported to %s", workers, use_gpu, storage
        )
        result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError("Ray Train finished without the final checkpoint from rank 0")
    with result.checkpoint.as_directory() as directory:
        _copy_into(Path(directory) / "model", Path(job.train.out_dir))
        if (Path(directory) / "dvclive").is_dir():
            _copy_into(Path(directory) / "dvclive", Path(live_dir))
    scan = (result.metrics or {}).get(SCAN_METRIC)
    return json.loads(scan) if isinstance(scan, str) else None
