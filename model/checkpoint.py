"""Training checkpoints (resume) and the final trained-model artefact (generation).

Checkpoints: one dict per file (``torch.save``), written atomically into the run directory
(``train.ckpt_dir``/``run-<hash>``, see ``model.train_setup.run_dir``) as ``step-NNNNNNN.pt`` (the newest ``keep`` are kept) plus a rolling ``last.pt``. Each records the
``fingerprint`` of the settings that must not change across a resume; :func:`check_resumable` refuses a
mismatch with a message that says how to start fresh.

Final artefact (``train.out_dir``): ``model.safetensors`` (EMA weights) + ``config.json`` (backbone config,
codec and text params, latent stats, steps), loaded with one call: :func:`load_trained`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from model.atomic_io import atomic_path, write_json_atomic
from model.train_data import Standardiser

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
ARTEFACT_FORMAT = 1
LAST = "last.pt"
STEP_FILE = re.compile(r"^step-(\d{7,})\.pt$")


class CheckpointMismatchError(RuntimeError):
    """last.pt was written by a run with different settings."""


def step_file(step: int) -> str:
    return f"step-{step:07d}.pt"


class CheckpointDir:
    """``last.pt`` + periodic ``step-NNNNNNN.pt`` files in one directory, the newest ``keep`` periodic ones kept."""

    def __init__(self, directory: str | os.PathLike, keep: int):
        if keep < 1:
            raise ValueError(f"params.yaml: train.keep must be >= 1, got {keep}")
        self.dir = Path(directory)
        self.keep = keep

    @property
    def last(self) -> Path:
        return self.dir / LAST

    def periodic(self) -> list[Path]:
        """Periodic checkpoint files, oldest first."""
        if not self.dir.exists():
            return []
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := STEP_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write ``state`` as step-NNNNNNN.pt and last.pt (each atomically), then prune old periodic files."""
        path = self.dir / step_file(step)
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        with atomic_path(self.last) as tmp:
            # a hard link: last.pt costs no second write (pruning the periodic name later leaves it intact)
            tmp.unlink()
            try:
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)
        for old in self.periodic()[: -self.keep]:
            old.unlink()
        logger.info("checkpoint step %d -> %s", step, path)
        return path

    def remove_partial_writes(self) -> None:
        """Delete temporaries a killed save left behind (``.<name>.*.tmp.pt``, see model.atomic_io)."""
        if self.dir.exists():
            for tmp in self.dir.glob(".*.tmp.pt"):
                logger.info("removing %s, left by an interrupted checkpoint write", tmp)
                tmp.unlink()

    def load_last(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The state in last.pt, or None when there is none."""
        if not self.last.exists():
            return None
        # our own files, holding numpy/python RNG states that weights_only refuses
        state = torch.load(self.last, map_location=map_location, weights_only=False)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointMismatchError(
                f"{self.last}: checkpoint format {state.get('format')!r}, this code writes {CHECKPOINT_FORMAT}; "
                f"delete {self.dir} (or set train.resume: false) to start fresh"
            )
        return state

    def clear(self) -> None:
        """Remove last.pt and the periodic files (a fresh start); other files are left alone."""
        for path in [*self.periodic(), self.last]:
            if path.exists():
                path.unlink()


def fingerprint_diff(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts, as 'key: saved -> current'."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            out += fingerprint_diff(saved.get(key, "<absent>"), current.get(key, "<absent>"), f"{prefix}{key}.")
        return out
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} -> {current!r}"]


def check_resumable(state: dict[str, Any], fingerprint: dict[str, Any], path: Path) -> None:
    """Raise :class:`CheckpointMismatchError` when ``state`` was written with another fingerprint."""
    saved = json.loads(json.dumps(state.get("fingerprint")))
    current = json.loads(json.dumps(fingerprint))
    diff = fingerprint_diff(saved, current)
    if diff:
        raise CheckpointMismatchError(
            f"{path} comes from a run with different settings:\n  " + "\n  ".join(diff) + "\n"
            f"To start fresh, delete it (rm -r {path.parent}) or run with train.resume: false "
            "(e.g. `dvc exp run -S train.resume=false`), which clears the old checkpoints first; "
            "to keep the old run, move the directory away or point train.ckpt_dir elsewhere."
        )


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
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "flowjam-velocitynet", "steps": str(steps)})
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
    from model.backbone import VelocityNet, VelocityNetConfig

    d = Path(model_dir)
    config_path, weights_path = d / "config.json", d / "model.safetensors"
    for p in (config_path, weights_path):
        if not p.exists():
            raise FileNotFoundError(f"{p}: not found; train a model first (`dvc repro train`)")
    config = json.loads(config_path.read_text())
    if config.get("format") != ARTEFACT_FORMAT:
        raise ValueError(f"{config_path}: artefact format {config.get('format')!r}, expected {ARTEFACT_FORMAT}")
    for key in ("backbone", "codec", "text", "stats", "steps"):
        if key not in config:
            raise ValueError(f"{config_path}: missing '{key}'; re-export with `dvc repro train`")
    net_config = VelocityNetConfig.from_dict(config["backbone"])
    net = VelocityNet(net_config)
    missing, unexpected = net.load_state_dict(load_file(str(weights_path)), strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights_path} does not match the backbone in {config_path}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    net = net.to(device).eval().requires_grad_(False)
    stats = Standardiser(tuple(config["stats"]["mean"]), tuple(config["stats"]["var"]))
    info = {k: v for k, v in config.items() if k not in ("backbone", "codec", "text", "stats", "steps")}
    return TrainedModel(net, net_config, config["codec"], config["text"], stats, int(config["steps"]), info)
