"""Assemble a training run from params.yaml and run it: the same function in-process and in each Ray worker.

Reads ``encode.out_dir`` (shards), ``encode.stats_path``, and the ``codec``, ``text``, ``model``, ``train``
sections. Rank 0 writes checkpoints, DVCLive files and, at the end, the final artefact in ``train.out_dir``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.data.stats import Standardiser
from model.flow.trained import export_trained
from model.training.config import TrainConfig
from model.training.context import SINGLE, DistContext, no_wrap
from model.training.data import LatentClips, TextBank, TrainBatches, load_split
from model.training.loop import Trainer, TrainResult

logger = logging.getLogger(__name__)

# settings that select how, not what, is computed: a checkpoint moves freely between them
PLACEMENT_KEYS = ("device", "scan_backend")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _without_placement(section: Any) -> Any:
    if isinstance(section, dict):
        return {k: _without_placement(v) for k, v in section.items() if k not in PLACEMENT_KEYS}
    return section


def run_fingerprint(params: dict[str, Any], config: TrainConfig, clips: LatentClips,
                    standardiser: Standardiser) -> dict[str, Any]:
    """Everything a resumed run must share with the run that wrote the checkpoint."""
    stats_digest = hashlib.sha256(json.dumps([standardiser.mean, standardiser.var]).encode()).hexdigest()[:16]
    return {
        "train": config.resume_fingerprint(),
        "model": _without_placement(params.get("model", {})),
        "text": _without_placement(params.get("text", {})),
        "codec": _without_placement(params.get("codec", {})),
        "data": {"train_clips": len(clips), "latent_dim": clips.dim, "stats": stats_digest},
    }


def run_dir(ckpt_root: str | Path, fingerprint: dict[str, Any]) -> Path:
    """``<train.ckpt_dir>/run-<hash>``: one directory per run fingerprint.

    Changing a setting that a resume must share (the model, lr, data, ...) therefore starts a new run beside the
    old one instead of failing or overwriting it, and switching back resumes the old run; settings that may
    change on resume (``train.steps`` among them) keep the same directory, so raising the step count extends it.
    """
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(ckpt_root) / f"run-{digest}"


def build_net(params: dict[str, Any], latent_dim: int, text_dim: int) -> tuple[nn.Module, Any]:
    """The VelocityNet named by the ``model:`` section, and its config."""
    from model.network.backbone import VelocityNet, VelocityNetConfig

    net_config = VelocityNetConfig.from_params(params["model"], latent_dim, text_dim)
    return VelocityNet(net_config), net_config


def run_training(
    params: dict[str, Any],
    dist: DistContext = SINGLE,
    device: torch.device | str = "cpu",
    prepare: Callable[[nn.Module, torch.device], nn.Module] = no_wrap,
    live_dir: str = "dvclive",
    text_encoder: Any = None,
) -> TrainResult:
    """Load data, build the network and train per ``params``; rank 0 exports ``train.out_dir`` at the end.

    ``text_encoder`` overrides ``build_text_encoder(params["text"])`` (tests pass a tiny one).
    """
    config = TrainConfig.from_params(params["train"])
    device = torch.device(device)
    shards_dir, stats_path = params["encode"]["out_dir"], params["encode"]["stats_path"]
    standardiser = Standardiser.from_json(stats_path)
    train_clips = load_split(shards_dir, "train")
    val_clips = load_split(shards_dir, "validation")
    if len(val_clips) == 0:
        logger.warning("%s has no validation clips: no validation loss will be logged", shards_dir)
    elif config.val_clips and len(val_clips) > config.val_clips:
        val_clips = LatentClips(val_clips.latents[: config.val_clips], val_clips.captions[: config.val_clips],
                                val_clips.track_ids[: config.val_clips], val_clips.dim, val_clips.frame_rate)
    if text_encoder is None:
        from model.text import build_text_encoder

        text_encoder = build_text_encoder(params["text"], device=str(device))
    texts = TextBank.build(text_encoder, list(train_clips.captions) + list(val_clips.captions))
    batches = TrainBatches(train_clips, texts, standardiser, config.batch_size, config.frames, config.seed,
                           dist.rank, dist.world_size)
    seed_everything(config.seed)
    net, net_config = build_net(params, train_clips.dim, texts.dim)
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    logger.info("VelocityNet: %.2fM trainable parameters; %d train clips; device %s; worker %d/%d",
                n_params / 1e6, len(train_clips), device, dist.rank + 1, dist.world_size)
    fingerprint = run_fingerprint(params, config, train_clips, standardiser)
    config = dataclasses.replace(config, ckpt_dir=str(run_dir(config.ckpt_dir, fingerprint)))
    logger.info("checkpoints: %s", config.ckpt_dir)
    trainer = Trainer(net, config, batches, texts, standardiser, val_clips, fingerprint, device, dist, prepare,
                      live_dir)
    result = trainer.fit()
    if dist.is_main:
        export_trained(
            config.out_dir, trainer.ema.module.state_dict(), net_config.to_dict(), params["codec"], params["text"],
            standardiser, result.step, latent_dim=train_clips.dim, text_dim=texts.dim,
            frame_rate=train_clips.frame_rate, text_encoder=text_encoder.name, parameters=n_params,
            nan_skipped=result.nan_skipped, val_loss_first=result.first_val_loss,
            val_loss_last=result.last_val_loss,
        )
    logger.info("training done at step %d: val loss %s -> %s, %d non-finite steps skipped", result.step,
                _fmt(result.first_val_loss), _fmt(result.last_val_loss), result.nan_skipped)
    return result


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
