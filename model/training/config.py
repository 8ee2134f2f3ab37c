"""The settings of a training run: :class:`TrainConfig` (the ``train:`` section of params.yaml, meaning of each key:
docs/stages/train.md) and :class:`TrainJob` (everything ``run_training`` needs besides the data it opens).

No defaults here: the params schema (``pipelines/common/schema.py``) is the one table of defaults, and a library
caller passes every value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from model.flow.lora import LoraSettings
from model.flow.objective import FlowConfig

FLOW_KEYS = ("t_mean", "t_std", "cond_drop")
# fingerprinted by model.training.setup instead: the base model by the sha256 of its weights (not its path), and
# these keys only when a base is used / LoRA is on, so runs from scratch keep their run directory
INIT_KEYS = ("init_from", "init_strict", "init_stats", "lora")
INIT_STATS = ("base", "data")
# settings that select how, not what, is computed: a checkpoint moves freely between them
PLACEMENT_KEYS = ("device", "scan_backend")

# keys that may change between a run and its resume; `steps` may grow (the run is extended: the cosine
# schedule is stretched to the new length), which the trainer checks on its own
RESUME_SAFE_KEYS = (
    "steps", "val_every", "ckpt_every", "keep", "log_every", "resume", "ckpt_dir", "out_dir",
    "val_batch_size", "val_clips",
)  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int
    accum_steps: int
    frames: int
    lr: float
    min_lr_ratio: float
    weight_decay: float
    warmup: int
    grad_clip: float
    ema_decay: float
    cond_drop: float
    t_mean: float
    t_std: float
    val_every: int
    val_batch_size: int
    val_clips: int
    ckpt_every: int
    keep: int
    log_every: int
    seed: int
    workers: int
    use_gpu: bool
    resume: bool
    ckpt_dir: str
    out_dir: str
    init_from: str
    init_strict: bool
    init_stats: str
    lora: LoraSettings

    def __post_init__(self) -> None:
        if not isinstance(self.lora, LoraSettings):  # the typed ``train.lora`` section (or a dict of it)
            lora = self.lora
            values = {
                f.name: lora[f.name] if isinstance(lora, dict) else getattr(lora, f.name)
                for f in fields(LoraSettings)
            }
            object.__setattr__(self, "lora", LoraSettings(**values))
        positive = (
            "steps", "batch_size", "accum_steps", "frames", "val_every", "val_batch_size", "ckpt_every", "keep",
            "log_every", "workers",
        )  # fmt: skip
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise ValueError(f"params.yaml: train.{key} must be >= 1, got {getattr(self, key)}")
        if self.warmup < 0 or self.val_clips < 0:
            raise ValueError("params.yaml: train.warmup and train.val_clips must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"params.yaml: train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.init_stats not in INIT_STATS:
            raise ValueError(f"params.yaml: train.init_stats must be base or data, got {self.init_stats!r}")
        if self.init_from and Path(self.init_from).resolve() == Path(self.out_dir).resolve():
            raise ValueError(
                f"params.yaml: train.init_from and train.out_dir are the same directory ({self.out_dir}); the run "
                "would overwrite its base: copy the base aside first (cp -r models/final models/base)"
            )
        if self.lora.enabled and not self.init_from:
            raise ValueError(
                "params.yaml: train.lora.rank > 0 adapts a trained model: set train.init_from to its directory "
                "(or train.lora.rank: 0 to train every weight)"
            )

    @property
    def flow(self) -> FlowConfig:
        """The objective's settings (logit-normal t, condition dropout)."""
        return FlowConfig(t_mean=self.t_mean, t_std=self.t_std, cond_drop=self.cond_drop)

    def resume_fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the checkpoint's run."""
        skip = set(RESUME_SAFE_KEYS) | set(FLOW_KEYS) | set(INIT_KEYS)
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        if self.accum_steps == 1:
            # absent at its default, so runs checkpointed before the key existed keep their run directory
            del out["accum_steps"]
        out["flow"] = {k: getattr(self, k) for k in FLOW_KEYS}
        return out


@dataclass(frozen=True)
class TrainJob:
    """One training run: its ``train`` settings, the network's sizes (the ``model:`` section without the latent and
    text dimensions, which the data decide), the ``codec:`` and ``text:`` sections stored with the model, and where
    the data are (the shards ``encode.out_dir`` with ``encode.stats_path``, the packed store ``pack.out_dir``)."""

    train: TrainConfig
    network: dict[str, Any]
    codec: dict[str, Any]
    text: dict[str, Any]
    shards_dir: str
    stats_path: str
    store_dir: str
