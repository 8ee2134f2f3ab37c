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
# fingerprinted by model.training.setup instead: the base model by the sha256 of its weights (not its path), the
# replay store by its shard listing (not its path), and these keys only when a base is used / LoRA or replay is on,
# so runs from scratch keep their run directory
INIT_KEYS = ("init_from", "init_strict", "init_stats", "lora", "replay")
INIT_STATS = ("base", "data")
# settings that select how, not what, is computed: a checkpoint moves freely between them
PLACEMENT_KEYS = ("device", "scan_backend")

# keys that may change between a run and its resume; `steps` may grow (the run is extended: the cosine
# schedule is stretched to the new length), which the trainer checks on its own
RESUME_SAFE_KEYS = (
    "steps", "val_every", "ckpt_every", "keep", "log_every", "resume", "ckpt_dir", "out_dir",
    "val_batch_size", "val_clips",
)  # fmt: skip


def _settings(cls: type[Any], section: Any) -> Any:
    """``section`` (a params schema section, a dict, or already ``cls``) as ``cls``."""
    if isinstance(section, cls):
        return section
    return cls(
        **{
            f.name: section[f.name] if isinstance(section, dict) else getattr(section, f.name)
            for f in fields(cls)
        }
    )


@dataclass(frozen=True)
class ReplaySettings:
    """``train.replay`` in params.yaml: ``share`` of every training batch drawn from the training split of another
    packed store (``store``, e.g. the base model's ``pack.out_dir``), the rest from this run's data. Meaning and
    why: docs/finetune.md; defaults: the params schema."""

    store: str
    share: float

    def __post_init__(self) -> None:
        if self.store and not 0.0 < self.share < 1.0:
            raise ValueError(
                f"params.yaml: train.replay.share must be in (0, 1) when train.replay.store is set, got {self.share}"
            )

    @property
    def enabled(self) -> bool:
        return bool(self.store)

    def rows(self, batch_size: int) -> int:
        """Replay rows per batch: ``share`` of ``batch_size``, rounded; at least one row of each source."""
        rows = round(self.share * batch_size)
        if not 1 <= rows <= batch_size - 1:
            raise ValueError(
                f"params.yaml: train.replay.share {self.share} of train.batch_size {batch_size} leaves "
                f"{rows} replay rows; each batch needs at least one row of each source: raise train.batch_size "
                "or move train.replay.share towards 0.5"
            )
        return rows


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
    replay: ReplaySettings

    def __post_init__(self) -> None:
        # the typed ``train.lora`` / ``train.replay`` sections (or dicts of them)
        object.__setattr__(self, "lora", _settings(LoraSettings, self.lora))
        object.__setattr__(self, "replay", _settings(ReplaySettings, self.replay))
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
        if self.replay.enabled:
            self.replay.rows(self.batch_size)  # refuses a share that leaves a source without rows

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
