"""Assemble a training run from a :class:`~model.training.config.TrainJob` and run it: the same function in-process
and in each Ray worker.

Opens the packed latent store (``job.store_dir``, memory-mapped; checked against the shards in ``job.shards_dir``)
and the statistics (``job.stats_path``). Text embeddings are cached under ``train.ckpt_dir``/text-cache. Rank 0
writes checkpoints, DVCLive files and, at the end, the final artefact in ``train.out_dir``.

Fine-tuning (docs/finetune.md): with ``train.init_from`` the network starts from that model's EMA weights
(``model.training.init_from``; a new optimiser and schedule) and, with ``train.init_stats: base``, standardises the
data with the base's latent statistics; with ``train.lora.rank > 0`` only LoRA adapters are trained
(``model.flow.lora``) and the export holds them merged or as ``adapter.safetensors`` beside a reference to the base.
With ``train.replay.store`` a share of every batch comes from another store's train split (``model.training.replay``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.data.stats import Standardiser
from model.data.store import PackedClips, check_current
from model.flow.lora import adapter_state, add_lora, merged
from model.flow.trained import export_trained
from model.training.config import PLACEMENT_KEYS, TrainConfig, TrainJob
from model.training.context import SINGLE, DistContext, no_wrap
from model.training.data import Clips, TrainBatches
from model.training.init_from import (
    InitMismatchError,
    InitReport,
    InitSource,
    apply_init,
    check_conditioning,
    check_dimensions,
    load_init,
)
from model.training.loop import Trainer, TrainResult
from model.training.replay import open_replay
from model.training.text_bank import TextBank

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _without_placement(section: Any) -> Any:
    if isinstance(section, dict):
        return {k: _without_placement(v) for k, v in section.items() if k not in PLACEMENT_KEYS}
    return section


# Batches assembled ahead in a background thread, per device type. On CPU none: assembling a batch takes ~1.5 ms
# on the training thread, while a second Python thread on the same 2 cores slowed the step by more than that
# (measured: 18 % more steps/s without it, docs/benchmarks.md); a GPU step leaves the CPU free to prepare the next.
PREFETCH_BATCHES = {"cpu": 0}
PREFETCH_BATCHES_DEFAULT = 2
TEXT_CACHE = "text-cache"


def run_fingerprint(
    job: TrainJob,
    config: TrainConfig,
    clips: Clips,
    standardiser: Standardiser,
    init: InitSource | None = None,
    replay: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a resumed run must share with the run that wrote the checkpoint; a base model (``init``) by the
    sha256 of its weights, so a changed base starts a new run directory, and replayed data (``replay``) by the
    identity :func:`~model.training.replay.open_replay` gives (keys absent when not used)."""
    stats_digest = hashlib.sha256(json.dumps([standardiser.mean, standardiser.var]).encode()).hexdigest()[:16]
    fingerprint = {
        "train": config.resume_fingerprint(),
        "model": _without_placement(job.network),
        "text": _without_placement(job.text),
        "codec": _without_placement(job.codec),
        "data": {"train_clips": len(clips), "latent_dim": clips.dim, "stats": stats_digest},
    }
    if init is not None:
        fingerprint["init"] = {
            "sha256": init.sha256,
            "strict": config.init_strict,
            "stats": config.init_stats,
        }
    if config.lora.enabled:
        fingerprint["lora"] = config.lora.identity()
    if replay is not None:
        fingerprint["replay"] = {**replay, "share": config.replay.share}
    return fingerprint


def run_dir(ckpt_root: str | Path, fingerprint: dict[str, Any]) -> Path:
    """``<train.ckpt_dir>/run-<hash>``: one directory per run fingerprint.

    Changing a setting that a resume must share (the model, lr, data, ...) therefore starts a new run beside the
    old one instead of failing or overwriting it, and switching back resumes the old run; settings that may
    change on resume (``train.steps`` among them) keep the same directory, so raising the step count extends it.
    """
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(ckpt_root) / f"run-{digest}"


def build_net(network: dict[str, Any], latent_dim: int, text_dim: int) -> tuple[nn.Module, Any]:
    """The VelocityNet of the sizes ``network`` (the ``model:`` section), and its config."""
    from model.network.backbone import VelocityNet, VelocityNetConfig

    net_config = VelocityNetConfig(latent_dim=latent_dim, text_dim=text_dim, **network)
    return VelocityNet(net_config), net_config


def run_training(
    job: TrainJob,
    dist: DistContext = SINGLE,
    device: torch.device | str = "cpu",
    prepare: Callable[[nn.Module, torch.device], nn.Module] = no_wrap,
    live_dir: str = "dvclive",
    text_encoder: Any = None,
    trainer_cls: type[Trainer] = Trainer,
    check_store: bool = True,
) -> TrainResult:
    """Load data, build the network and train per ``job``; rank 0 exports ``train.out_dir`` at the end.

    ``text_encoder`` overrides ``build_text_encoder(job.text)`` (tests pass a tiny one); ``trainer_cls`` is
    the loop (the Ray launcher passes one that also reports checkpoints to Ray Train). ``check_store`` compares
    the store with the shards in ``job.shards_dir`` (the Ray launcher does it once, on the driver, since workers on
    other nodes need not see the shards).
    """
    config = job.train
    device = torch.device(device)
    store_dir = job.store_dir
    standardiser = Standardiser.from_json(job.stats_path)
    init = load_init(config.init_from) if config.init_from else None
    if init is not None:
        check_conditioning(init, job.codec, job.text)
    if check_store:
        check_current(store_dir, job.shards_dir)
    replay_clips, replay = (
        open_replay(config.replay.store, store_dir) if config.replay.enabled else (None, None)
    )
    train_clips = PackedClips.open(store_dir, "train")
    val_store = PackedClips.open(store_dir, "validation")
    val_clips: Clips = val_store
    if len(val_clips) == 0:
        logger.warning("%s has no validation clips: no validation loss will be logged", store_dir)
    elif config.val_clips and len(val_clips) > config.val_clips:
        val_clips = val_clips.head(config.val_clips)
    if text_encoder is None:
        from model.text import build_text_encoder

        text_encoder = build_text_encoder(job.text, device=str(device))
    texts = TextBank.cached(
        text_encoder,
        [*train_clips.captions, *val_clips.captions, *(replay_clips.captions if replay_clips else ())],
        Path(config.ckpt_dir) / TEXT_CACHE,
        _without_placement(job.text),
    )
    if init is not None:
        check_dimensions(init, train_clips.dim, texts.dim, text_encoder.name)
        if config.init_stats == "base":
            standardiser = init.stats  # the network learned in the base's standardised latent space
    batches = TrainBatches(
        train_clips,
        texts,
        standardiser,
        config.batch_size,
        config.frames,
        config.seed,
        dist.rank,
        dist.world_size,
        prefetch=PREFETCH_BATCHES.get(device.type, PREFETCH_BATCHES_DEFAULT),
        pin_memory=device.type == "cuda",  # so the step's copies to the GPU are asynchronous
        replay=replay_clips,
        replay_rows=config.replay.rows(config.batch_size) if replay_clips else 0,
    )
    seed_everything(config.seed)
    net, net_config = build_net(job.network, train_clips.dim, texts.dim)
    n_params = sum(p.numel() for p in net.parameters())
    report = apply_init(net, init, config.init_strict) if init is not None else None
    lora_modules = _add_lora(net, config, report) if config.lora.enabled else []
    n_trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    if replay_clips is not None:
        logger.info(
            "replay: %d of every %d rows from %d clips of %s",
            batches.replay_rows,
            config.batch_size,
            len(replay_clips),
            config.replay.store,
        )
    logger.info(
        "VelocityNet: %.2fM trainable parameters (of %.2fM); %d train clips; device %s; worker %d/%d",
        n_trainable / 1e6,
        n_params / 1e6,
        len(train_clips),
        device,
        dist.rank + 1,
        dist.world_size,
    )
    fingerprint = run_fingerprint(job, config, train_clips, standardiser, init, replay)
    config = dataclasses.replace(config, ckpt_dir=str(run_dir(config.ckpt_dir, fingerprint)))
    logger.info("checkpoints: %s", config.ckpt_dir)
    trainer = trainer_cls(
        net, config, batches, texts, standardiser, val_clips, fingerprint, device, dist, prepare, live_dir
    )
    started = time.perf_counter()
    try:
        result = trainer.fit()
    finally:
        batches.close()
        train_clips.close()
        val_store.close()
        if replay_clips is not None:
            replay_clips.close()
    if batches.served:  # one batch per step
        logger.info(
            "data loading: %.2f ms/step waited, %.2f ms/batch assembled %s; %.1f ms/step",
            1e3 * batches.wait_s / batches.served,
            1e3 * batches.load_s / batches.served,
            "in the background" if batches.prefetch else "on the training thread",
            1e3 * (time.perf_counter() - started) / batches.served,
        )
    if dist.is_main:
        state, fine_tune = _export_state(trainer.ema.module, config, init, report, lora_modules, n_trainable)
        if replay is not None:
            fine_tune["replay"] = {"store": config.replay.store, "share": config.replay.share, **replay}
        export_trained(
            config.out_dir,
            state,
            net_config.to_dict(),
            job.codec,
            job.text,
            standardiser,
            result.step,
            latent_dim=train_clips.dim,
            text_dim=texts.dim,
            frame_rate=train_clips.frame_rate,
            text_encoder=text_encoder.name,
            parameters=n_params,
            nan_skipped=result.nan_skipped,
            val_loss_first=result.first_val_loss,
            val_loss_last=result.last_val_loss,
            **fine_tune,
        )
    logger.info(
        "training done at step %d: val loss %s -> %s, %d non-finite steps skipped",
        result.step,
        _fmt(result.first_val_loss),
        _fmt(result.last_val_loss),
        result.nan_skipped,
    )
    return result


def _add_lora(net: nn.Module, config: TrainConfig, report: InitReport | None) -> list[str]:
    """Wrap ``config.lora.targets`` in adapters; only a fully loaded base can be adapted (its frozen weights are
    what an unmerged export refers to)."""
    if report is not None and report.not_loaded:
        raise InitMismatchError(
            f"params.yaml: train.lora needs every weight from train.init_from, but {len(report.not_loaded)} "
            "tensors did not load (train.init_strict: false); use the base's model: sizes or train.lora.rank: 0"
        )
    return add_lora(net, config.lora)


def _export_state(
    ema_net: nn.Module,
    config: TrainConfig,
    init: InitSource | None,
    report: InitReport | None,
    lora_modules: list[str],
    n_trainable: int,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors to export (plain weights, LoRA merged, or adapters only) and the artefact's fine-tune record."""
    info: dict[str, Any] = {}
    if init is not None:
        info["init_from"] = {
            "path": init.path,
            "sha256": init.sha256,
            "stats": config.init_stats,
            "not_loaded": report.not_loaded if report is not None else [],
        }
    if not config.lora.enabled:
        return ema_net.state_dict(), info
    lora = config.lora
    info["lora"] = {
        **lora.identity(),
        "modules": lora_modules,
        "trainable": n_trainable,
        "merged": lora.merge,
    }
    if lora.merge:
        return merged(ema_net).state_dict(), info
    assert init is not None  # TrainConfig refuses LoRA without a base
    info["adapter"] = {
        "base": init.path,
        "base_sha256": init.sha256,
        "rank": lora.rank,
        "alpha": lora.alpha,
        "modules": lora_modules,
    }
    return adapter_state(ema_net), info


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
