"""Stage ``train``: latent shards + stats -> trained velocity network.

Reads ``pack.out_dir`` (the packed store, checked against the shards in ``encode.out_dir``), ``encode.stats_path``
and the ``codec``, ``text``, ``model``, ``train`` and ``ray`` params. Writes checkpoints into
``train.ckpt_dir``/run-<hash> (persisted; a rerun resumes from its ``last.pt``), DVCLive metrics/plots into
``dvclive/``, and the final artefact (EMA weights ``model.safetensors`` + ``config.json``) with ``provenance.json``
into ``train.out_dir``. One worker on CPU (the default) trains in-process; more workers or ``train.use_gpu`` run the
same loop under Ray Train (DDP), on a private local Ray instance or on the cluster at ``ray.address`` /
``RAY_ADDRESS``, with Ray Train's checkpoints in ``ray.storage`` (docs/scaling-out.md).
"""

from __future__ import annotations

import pipelines.common.openmp  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)

# isort: split
import json
import logging
from pathlib import Path

from model.network.scan_cuda import CudaScanUnavailableError
from model.runtime.atomic_io import write_json_atomic
from model.training.checkpoints import CheckpointMismatchError
from model.training.config import TrainConfig, TrainJob
from model.training.ray_train import run_ray_training
from model.training.setup import run_training
from pipelines.common.cli import run_main
from pipelines.common.logs import setup_logging
from pipelines.common.params import ParamsSchema, config_of, load_params, stage_arg_parser
from pipelines.common.provenance import provenance

log = logging.getLogger("pipelines.train")

LIVE_DIR = "dvclive"
PARAM_SECTIONS = ("codec", "text", "model", "train", "ray")


def train_job(params: ParamsSchema) -> TrainJob:
    """The training run that ``params`` describe (sections ``train``, ``model``, ``codec``, ``text``, the data paths
    ``encode.out_dir``, ``encode.stats_path`` and ``pack.out_dir``)."""
    return TrainJob(
        train=config_of(TrainConfig, params.train),
        network=params.model.model_dump(),
        codec=params.codec.model_dump(),
        text=params.text.model_dump(),
        shards_dir=params.encode.out_dir,
        stats_path=params.encode.stats_path,
        store_dir=params.pack.out_dir,
    )


def main(argv: list[str] | None = None) -> None:
    parser = stage_arg_parser("Train the flow-matching velocity network on the latent shards.")
    parser.add_argument("--live-dir", default=LIVE_DIR, help="DVCLive output directory (default: dvclive)")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    job = train_job(params)
    config = job.train
    if config.workers > 1 or config.use_gpu:
        run_ray_training(job, params.ray.storage, live_dir=args.live_dir, address=params.ray.address)
    else:
        run_training(job, live_dir=args.live_dir)
    out_dir = Path(config.out_dir)
    artefact = json.loads((out_dir / "config.json").read_text())
    write_json_atomic(
        out_dir / "provenance.json",
        provenance(
            "train",
            {k: getattr(params, k).model_dump() for k in PARAM_SECTIONS},
            steps=artefact["steps"],
            workers=config.workers,
            use_gpu=config.use_gpu,
            nan_skipped=artefact.get("nan_skipped"),
            val_loss_first=artefact.get("val_loss_first"),
            val_loss_last=artefact.get("val_loss_last"),
        ),
    )
    log.info(
        "trained model in %s (step %d, val loss %s -> %s)",
        out_dir,
        artefact["steps"],
        artefact.get("val_loss_first"),
        artefact.get("val_loss_last"),
    )


if __name__ == "__main__":
    run_main("train", main, extra=(CudaScanUnavailableError, CheckpointMismatchError))
