"""The ``train:`` section of params.yaml as a frozen dataclass (meaning of each key: docs/stages/train.md)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from model.flow.objective import FlowConfig
from model.runtime.params_check import reject_unknown_keys

FLOW_KEYS = ("t_mean", "t_std", "cond_drop")

# keys that may change between a run and its resume; `steps` may grow (the run is extended: the cosine
# schedule is stretched to the new length), which the trainer checks on its own
RESUME_SAFE_KEYS = (
    "steps",
    "val_every",
    "ckpt_every",
    "keep",
    "log_every",
    "resume",
    "ckpt_dir",
    "out_dir",
    "val_batch_size",
    "val_clips",
)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000
    batch_size: int = 16
    accum_steps: int = 1
    frames: int = 128
    lr: float = 3e-4
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.01
    warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    flow: FlowConfig = FlowConfig()
    val_every: int = 500
    val_batch_size: int = 32
    val_clips: int = 256
    ckpt_every: int = 500
    keep: int = 3
    log_every: int = 10
    seed: int = 0
    workers: int = 1
    use_gpu: bool = False
    resume: bool = True
    ckpt_dir: str = "checkpoints"
    out_dir: str = "models/final"

    def __post_init__(self) -> None:
        positive = (
            "steps",
            "batch_size",
            "accum_steps",
            "frames",
            "val_every",
            "val_batch_size",
            "ckpt_every",
            "keep",
            "log_every",
            "workers",
        )
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise ValueError(f"params.yaml: train.{key} must be >= 1, got {getattr(self, key)}")
        if self.warmup < 0 or self.val_clips < 0:
            raise ValueError("params.yaml: train.warmup and train.val_clips must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"params.yaml: train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    @classmethod
    def from_params(cls, train: dict[str, Any]) -> TrainConfig:
        """Build from ``params["train"]``; unknown keys are an error (a typo would silently do nothing)."""
        if not isinstance(train, dict):
            raise TypeError(f"params.yaml: 'train' must be a mapping, got {type(train).__name__}")
        reject_unknown_keys(train, ({f.name for f in fields(cls)} - {"flow"}) | set(FLOW_KEYS), "train")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "flow" or f.name not in train:
                continue
            values[f.name] = _typed(train[f.name], getattr(cls, f.name), f.name)
        return cls(flow=FlowConfig.from_params(train), **values)

    def resume_fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the checkpoint's run."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in RESUME_SAFE_KEYS}
        if self.accum_steps == 1:
            # absent at its default, so runs checkpointed before the key existed keep their run directory
            del out["accum_steps"]
        out["flow"] = {k: getattr(self.flow, k) for k in FLOW_KEYS}
        return out


def _typed(value: Any, default: Any, key: str) -> Any:
    """``value`` as the type of the field's default; an int field refuses 2.5 rather than truncating it."""
    if isinstance(default, bool):
        return _as_bool(value, key)
    if isinstance(default, int):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float | str)
            or float(value) != int(float(value))
        ):
            raise ValueError(f"params.yaml: train.{key} must be an integer, got {value!r}")
        return int(float(value))
    try:
        return type(default)(value)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"params.yaml: train.{key} must be a {type(default).__name__}, got {value!r}"
        ) from err


def _as_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"params.yaml: train.{key} must be true or false, got {value!r}")
