"""Stage ``train``: latent shards + stats -> trained velocity network.

Reads ``pack.out_dir`` (the packed store, checked against the shards in ``encode.out_dir``), ``encode.stats_path``
and the ``codec``, ``text``, ``model``, ``train`` and ``ray`` params. Writes DVCLive metrics/plots into ``dvclive/``
and the final artefact (EMA weights ``model.safetensors`` + ``config.json``) into ``train.out_dir``: the stage's
DVC outputs, byte-identical for identical inputs, code and params. Checkpoints go to ``train.ckpt_dir``/run-<hash>
(a relative ``train.ckpt_dir`` under the user's checkout, ``$DVC_ROOT``, also for queued and temporary
experiments): not a DVC output, so their absence never makes the stage stale, and a rerun with more
``train.steps`` resumes from the run's ``last.pt`` when it is there (docs/experiments.md). The run record
(throughput, wall time, commit) goes to ``provenance/train.json``. One worker on CPU (the default) trains
in-process; more workers or ``train.use_gpu`` run the same loop under Ray Train (DDP), on a private local Ray
instance or on the cluster at ``ray.address`` / ``RAY_ADDRESS``, with Ray Train's checkpoints in ``ray.storage``
(docs/scaling-out.md).
"""

from __future__ import annotations

# isort: split
import json
import logging
from pathlib import Path

from model.network.scan_cuda import CudaScanUnavailableError
from model.training.checkpoints import CheckpointMismatchError
from model.training.config import TrainConfig, TrainJob
from model.training.loop import TrainResult
from model.training.ray_train import run_ray_training
from model.training.setup import run_training
from pipelines.common.cli import run_main
from pipelines.common.cpu_turn import Turn, cpu_turn
from pipelines.common.logs import setup_logging
from pipelines.common.params import ParamsSchema, config_of, load_params, stage_arg_parser
from pipelines.common.provenance import write_run_record
from pipelines.common.workspace import in_dvc_root

log = logging.getLogger("pipelines.train")

LIVE_DIR = "dvclive"
PARAM_SECTIONS = ("codec", "text", "model", "train", "ray")


def train_job(params: ParamsSchema) -> TrainJob:
    """The training run that ``params`` describe (sections ``train``, ``model``, ``codec``, ``text``, the data paths
    ``encode.out_dir``, ``encode.stats_path`` and ``pack.out_dir``); ``train.ckpt_dir`` resolved against the user's
    checkout (``pipelines.common.workspace.in_dvc_root``)."""
    return TrainJob(
        train=config_of(TrainConfig, params.train, ckpt_dir=str(in_dvc_root(params.train.ckpt_dir))),
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
    result: TrainResult | None = None
    scan = None
    turn = Turn()
    if config.workers > 1 or config.use_gpu:
        scan = run_ray_training(job, params.ray.storage, live_dir=args.live_dir, address=params.ray.address)
    else:  # in-process, on the CPU: one such stage at a time per checkout (pipelines.common.cpu_turn)
        with cpu_turn("train") as turn:
            result = run_training(job, live_dir=args.live_dir)
        scan = result.scan
    out_dir = Path(config.out_dir)
    artefact = json.loads((out_dir / "config.json").read_text())
    write_run_record(
        "train",
        {k: getattr(params, k).model_dump() for k in PARAM_SECTIONS},
        steps=artefact["steps"],
        workers=config.workers,
        use_gpu=config.use_gpu,
        nan_skipped=artefact.get("nan_skipped"),
        val_loss_first=artefact.get("val_loss_first"),
        val_loss_last=artefact.get("val_loss_last"),
        # the in-process run reports these; under Ray Train they stay in the workers' logs
        checkpoints=result.ckpt_dir if result else config.ckpt_dir,
        resumed_from_step=result.resumed_from if result else None,
        steps_per_s=result.steps_per_s if result else None,
        scan_backend=scan,
        cpu_turn=turn.as_dict(),
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
