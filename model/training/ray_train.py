"""The Ray Train launcher: the same training loop in one process per worker.

One worker on CPU runs in-process with :data:`model.training.context.SINGLE` (no torch.distributed, no Ray). More workers, or a GPU, run
the same loop (:func:`model.training.setup.run_training`) under ``ray.train.torch.TorchTrainer``: Ray starts one
process per worker, sets up the torch.distributed process group (gloo on CPU, nccl on GPU), and
``ray.train.torch.prepare_model`` wraps the objective in DistributedDataParallel, which averages gradients in
``backward``. Every rank draws its own disjoint slice of each epoch; rank 0 alone validates, logs and writes
checkpoints, so ``train.ckpt_dir`` must be on a filesystem every worker can read (for a resume).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.training.context import DistContext
from model.training.setup import run_training

logger = logging.getLogger(__name__)


def ray_prepare(module: nn.Module, device: torch.device) -> nn.Module:
    """Move to this worker's device and wrap in DDP (when there is more than one worker)."""
    import ray.train.torch

    return ray.train.torch.prepare_model(module, move_to_device=device, parallel_strategy="ddp")


def _worker_loop(config: dict[str, Any]) -> None:
    """The per-worker entry point that Ray Train runs; paths in params are relative to the driver's cwd."""
    import ray.train
    import ray.train.torch

    os.chdir(config["cwd"])
    torch.set_num_threads(config["threads"])
    context = ray.train.get_context()
    dist = DistContext(rank=context.get_world_rank(), world_size=context.get_world_size())
    device = ray.train.torch.get_device()
    run_training(config["params"], dist=dist, device=device, prepare=ray_prepare, live_dir=config["live_dir"],
                 text_encoder=config["text_encoder"])


def run_ray_training(
    params: dict[str, Any],
    workers: int,
    use_gpu: bool,
    storage_dir: str | os.PathLike,
    live_dir: str = "dvclive",
    threads_per_worker: int = 1,
    text_encoder: Any = None,
) -> None:
    """Run :func:`model.training.setup.run_training` on ``workers`` Ray Train workers (DDP); blocks until done.

    Uses the running Ray instance (e.g. a cluster) or starts a local one for the call. ``text_encoder`` (picklable) replaces the one each
    worker would build from ``params["text"]``. Raises when a worker fails (Ray's TrainingFailedError).
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from model.runtime.ray_session import available_cpus, ray_session

    if workers < 1:
        raise ValueError(f"params.yaml: train.workers must be >= 1, got {workers}")
    gpus = torch.cuda.device_count() if use_gpu else 0
    if use_gpu and gpus < workers:
        raise RuntimeError(f"params.yaml: train.use_gpu with train.workers={workers} needs {workers} GPUs, "
                           f"this machine has {gpus} (a multi-node Ray cluster: start it first with `ray start`)")
    resources = {"CPU": threads_per_worker, **({"GPU": 1} if use_gpu else {})}
    storage = Path(storage_dir).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"params": params, "cwd": os.getcwd(), "threads": threads_per_worker,
                           "live_dir": live_dir, "text_encoder": text_encoder},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name="flowjam-train", storage_path=str(storage)),
    )
    logger.info("Ray Train: %d worker(s), use_gpu=%s, run files under %s", workers, use_gpu, storage)
    with ray_session(num_cpus=max(available_cpus(), workers * threads_per_worker), num_gpus=gpus):
        trainer.fit()
