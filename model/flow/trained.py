"""The trained model artefact: what training exports and what generation loads.

``train.out_dir`` (``models/final``) holds ``model.safetensors`` (EMA weights) + ``config.json`` (backbone config,
codec and text params, latent stats, steps), written by :func:`export_trained` and loaded with one call:
:func:`load_trained`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from model.data.stats import Standardiser
from model.runtime.atomic_io import write_json_atomic, write_safetensors_atomic

logger = logging.getLogger(__name__)

ARTEFACT_FORMAT = 1


@dataclass
class TrainedModel:
    """The final artefact in memory: ``net`` (EMA weights, eval mode), its config, codec/text params, stats."""

    net: nn.Module
    config: Any
    codec_params: dict[str, Any]
    text_params: dict[str, Any]
    stats: Standardiser
    steps: int
    info: dict[str, Any]

    def destandardise(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised latents (B, D, T) (what the net generates) -> codec latents (B, D, T)."""
        return self.stats.destandardise(z)

    def standardise(self, z: torch.Tensor) -> torch.Tensor:
        """Codec latents (B, D, T) -> the standardised space the net was trained in."""
        return self.stats.standardise(z)


def export_trained(
    out_dir: str | os.PathLike,
    ema_state: dict[str, torch.Tensor],
    backbone_config: dict[str, Any],
    codec_params: dict[str, Any],
    text_params: dict[str, Any],
    stats: Standardiser,
    steps: int,
    **info: Any,
) -> Path:
    """Write ``model.safetensors`` (the EMA state dict) and ``config.json`` into ``out_dir`` atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in ema_state.items()}
    write_safetensors_atomic(
        out / "model.safetensors", tensors, metadata={"format": "flowjam-velocitynet", "steps": str(steps)}
    )
    config = {
        "format": ARTEFACT_FORMAT,
        "backbone": backbone_config,
        "codec": codec_params,
        "text": text_params,
        "stats": {"mean": list(stats.mean), "var": list(stats.var)},
        "steps": int(steps),
        **info,
    }
    write_json_atomic(out / "config.json", config)
    logger.info("wrote trained model (%d tensors, step %d) to %s", len(tensors), steps, out)
    return out


def load_trained(model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedModel:
    """Load ``model_dir`` (``models/final``): the VelocityNet with its EMA weights, in eval mode on ``device``."""
    from model.network.backbone import VelocityNet, VelocityNetConfig

    d = Path(model_dir)
    config_path, weights_path = d / "config.json", d / "model.safetensors"
    for p in (config_path, weights_path):
        if not p.exists():
            raise FileNotFoundError(f"{p}: not found; train a model first (`dvc repro train`)")
    config = json.loads(config_path.read_text())
    if config.get("format") != ARTEFACT_FORMAT:
        raise ValueError(
            f"{config_path}: artefact format {config.get('format')!r}, expected {ARTEFACT_FORMAT}"
        )
    for key in ("backbone", "codec", "text", "stats", "steps"):
        if key not in config:
            raise ValueError(f"{config_path}: missing '{key}'; re-export with `dvc repro train`")
    net_config = VelocityNetConfig.from_dict(config["backbone"])
    net = VelocityNet(net_config)
    missing, unexpected = net.load_state_dict(load_file(str(weights_path)), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{weights_path} does not match the backbone in {config_path}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    net = net.to(device).eval().requires_grad_(False)
    stats = Standardiser(tuple(config["stats"]["mean"]), tuple(config["stats"]["var"]))
    info = {k: v for k, v in config.items() if k not in ("backbone", "codec", "text", "stats", "steps")}
    return TrainedModel(net, net_config, config["codec"], config["text"], stats, int(config["steps"]), info)
