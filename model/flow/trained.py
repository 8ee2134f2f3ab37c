"""The trained model artefact: what training exports and what generation loads.

``train.out_dir`` (``models/final``) holds ``model.safetensors`` (EMA weights) + ``config.json`` (backbone config,
codec and text params, latent stats, steps), written by :func:`export_trained` and loaded with one call:
:func:`load_trained`. A LoRA fine-tune exported unmerged (``train.lora.merge: false``) holds ``adapter.safetensors``
instead of ``model.safetensors``, and its config.json an ``adapter`` record: the base model's directory and the
sha256 of its weights, the LoRA rank, alpha and adapted layers; :func:`load_trained` loads that base, checks it is
the same one and folds the adapters into it. :func:`artefact_sha256` is a model directory's identity (what a
fine-tune records of its base).
"""

from __future__ import annotations

import hashlib
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
from model.runtime.errors import InputError

logger = logging.getLogger(__name__)

ARTEFACT_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "config.json"
_CORE_KEYS = ("backbone", "codec", "text", "stats", "steps")


class BaseModelMismatchError(InputError, ValueError):
    """An adapter artefact whose base model is missing or no longer the one it was trained on."""


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
    adapter: dict[str, Any] | None = None,
    **info: Any,
) -> Path:
    """Write ``model.safetensors`` (the EMA state dict) and ``config.json`` into ``out_dir`` atomically.

    With ``adapter`` (``{"base", "base_sha256", "rank", "alpha", "modules"}``) ``ema_state`` holds only the LoRA
    tensors, written as ``adapter.safetensors``; ``load_trained`` then applies them to the base model.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in ema_state.items()}
    name, stale = (ADAPTER_FILE, WEIGHTS_FILE) if adapter is not None else (WEIGHTS_FILE, ADAPTER_FILE)
    write_safetensors_atomic(
        out / name, tensors, metadata={"format": "flowjam-velocitynet", "steps": str(steps)}
    )
    (out / stale).unlink(missing_ok=True)  # left by an earlier export of the other kind
    if adapter is not None:
        info = {**info, "adapter": adapter}
    config = {
        "format": ARTEFACT_FORMAT,
        "backbone": backbone_config,
        "codec": codec_params,
        "text": text_params,
        "stats": {"mean": list(stats.mean), "var": list(stats.var)},
        "steps": int(steps),
        **info,
    }
    write_json_atomic(out / CONFIG_FILE, config)
    logger.info("wrote trained model (%d tensors, step %d) to %s", len(tensors), steps, out)
    return out


def read_artefact_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The checked ``config.json`` of a trained model directory (weights not read)."""
    d = Path(model_dir)
    config_path = d / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path}: not found; train a model first (`dvc repro train`)")
    config = json.loads(config_path.read_text())
    if config.get("format") != ARTEFACT_FORMAT:
        raise ValueError(
            f"{config_path}: artefact format {config.get('format')!r}, expected {ARTEFACT_FORMAT}"
        )
    for key in _CORE_KEYS:
        if key not in config:
            raise ValueError(f"{config_path}: missing '{key}'; re-export with `dvc repro train`")
    weights = d / (ADAPTER_FILE if "adapter" in config else WEIGHTS_FILE)
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: not found; train a model first (`dvc repro train`)")
    return config


def _file_sha256(path: Path, digest: Any) -> Any:
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest


def artefact_sha256(model_dir: str | os.PathLike) -> str:
    """A model directory's identity: sha256 of ``model.safetensors``, or of ``adapter.safetensors`` plus the
    sha256 of the base it was trained on (recorded in config.json) for an unmerged LoRA artefact."""
    d = Path(model_dir)
    config = read_artefact_config(d)
    if "adapter" not in config:
        return _file_sha256(d / WEIGHTS_FILE, hashlib.sha256()).hexdigest()
    digest = hashlib.sha256(f"adapter on {config['adapter']['base_sha256']}\0".encode())
    return _file_sha256(d / ADAPTER_FILE, digest).hexdigest()


def _base_with_adapter(model_dir: Path, adapter: dict[str, Any], backbone: Any) -> nn.Module:
    """The base model named by ``adapter`` with the LoRA weights of ``model_dir`` merged in."""
    from model.flow.lora import LoraSettings, add_lora, load_adapter, merged

    base_dir = Path(adapter["base"])
    if not (base_dir / CONFIG_FILE).is_file():
        raise BaseModelMismatchError(
            f"{model_dir / ADAPTER_FILE} adapts the model in {base_dir} (train.init_from of its run), which is not "
            "there; restore that directory or export the fine-tune merged (train.lora.merge: true)"
        )
    found = artefact_sha256(base_dir)
    if found != adapter["base_sha256"]:
        raise BaseModelMismatchError(
            f"{model_dir / ADAPTER_FILE} was trained on {base_dir} with weights sha256 {adapter['base_sha256'][:16]}, "
            f"but {base_dir} now holds {found[:16]}; restore that base or retrain the fine-tune (dvc repro train)"
        )
    base = load_trained(base_dir, scan_backend=backbone.scan_backend)
    if base.config != backbone:
        raise BaseModelMismatchError(f"{base_dir}: its backbone differs from the one {model_dir} records")
    net = base.net.requires_grad_(False)
    settings = LoraSettings(
        rank=int(adapter["rank"]),
        alpha=float(adapter["alpha"]),
        dropout=0.0,
        targets=tuple(adapter["modules"]),
        merge=False,
    )
    add_lora(net, settings)
    load_adapter(net, load_file(str(model_dir / ADAPTER_FILE)), str(model_dir / ADAPTER_FILE))
    return merged(net)


def load_trained(
    model_dir: str | os.PathLike, device: str | torch.device = "cpu", scan_backend: str | None = None
) -> TrainedModel:
    """Load ``model_dir`` (``models/final``): the VelocityNet with its EMA weights, in eval mode on ``device``.

    An unmerged LoRA artefact is loaded as its base model with the adapters folded into the weights.
    ``scan_backend`` replaces the backend stored with the weights (None keeps it): it says how the scan is
    computed, not what, so generation picks its own (``auto``) for the machine at hand.
    """
    import dataclasses

    from model.network.backbone import VelocityNet, VelocityNetConfig

    d = Path(model_dir)
    config = read_artefact_config(d)
    stored = VelocityNetConfig.from_dict(config["backbone"])
    net_config = stored if scan_backend is None else dataclasses.replace(stored, scan_backend=scan_backend)
    if "adapter" in config:
        net = _base_with_adapter(d, config["adapter"], net_config)
    else:
        weights_path = d / WEIGHTS_FILE
        net = VelocityNet(net_config)
        missing, unexpected = net.load_state_dict(load_file(str(weights_path)), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{weights_path} does not match the backbone in {d / CONFIG_FILE}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    net = net.to(device).eval().requires_grad_(False)
    stats = Standardiser(tuple(config["stats"]["mean"]), tuple(config["stats"]["var"]))
    info = {k: v for k, v in config.items() if k not in _CORE_KEYS}
    return TrainedModel(net, net_config, config["codec"], config["text"], stats, int(config["steps"]), info)
