"""Per-channel latent mean and variance: streaming, mergeable (Chan et al. 1979 parallel update), float64.

Only valid frames count (frames at and after a clip's ``n_frames`` are padding). Training standardises latents
per channel with these: ``(z - mean) / sqrt(var)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class StatsAccumulator:
    """Running count, mean (D,) and sum of squared deviations M2 (D,) over frames of (D, T) latents."""

    dim: int
    count: int = 0
    mean: np.ndarray = field(default=None)  # type: ignore[assignment]
    m2: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.mean is None:
            self.mean = np.zeros(self.dim, dtype=np.float64)
        if self.m2 is None:
            self.m2 = np.zeros(self.dim, dtype=np.float64)

    def update(self, latent: np.ndarray, n_frames: int | None = None) -> None:
        """Add the first ``n_frames`` frames (default all) of one latent (D, T)."""
        if latent.ndim != 2 or latent.shape[0] != self.dim:
            raise ValueError(f"expected a latent of shape ({self.dim}, T), got {latent.shape}")
        frames = latent if n_frames is None else latent[:, :n_frames]
        self.update_frames(frames)

    def update_frames(self, frames: np.ndarray) -> None:
        """Add a block of frames (D, n) as one batch, merged in with Chan's formula."""
        n = frames.shape[1]
        if n == 0:
            return
        x = frames.astype(np.float64, copy=False)
        batch_mean = x.mean(axis=1)
        batch_m2 = ((x - batch_mean[:, None]) ** 2).sum(axis=1)
        self._combine(n, batch_mean, batch_m2)

    def merge(self, other: StatsAccumulator) -> StatsAccumulator:
        """Fold ``other`` into this accumulator (in place) and return self."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge stats of dim {other.dim} into dim {self.dim}")
        self._combine(other.count, other.mean, other.m2)
        return self

    def _combine(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        if n_b == 0:
            return
        n_a = self.count
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (n_a * n_b / n)
        self.count = n

    @property
    def var(self) -> np.ndarray:
        """Population variance (numpy's ``var`` with ddof=0)."""
        if self.count == 0:
            raise ValueError("no frames accumulated: variance undefined (is the train split empty?)")
        return self.m2 / self.count

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        return {"count": int(self.count), "mean": self.mean.tolist(), "var": self.var.tolist(), **extra}


def accumulate(latents: Iterable[tuple[np.ndarray, int]], dim: int) -> StatsAccumulator:
    """Stats over (latent (D, T), n_frames) pairs."""
    acc = StatsAccumulator(dim)
    for latent, n_frames in latents:
        acc.update(latent, n_frames)
    return acc


def shard_stats(shard_dir: str | os.PathLike, split: str | None = "train") -> StatsAccumulator:
    """Stats over the valid frames of every clip of ``split`` in the shards of ``shard_dir``, one shard at a time.

    Each shard is accumulated on its own and merged in (Chan), as parallel workers would.
    """
    from tqdm import tqdm

    from model.data.shards import read_shard, shard_metadata, shard_paths

    meta = shard_metadata(shard_dir)
    total = StatsAccumulator(meta.latent_shape[0])
    for path in tqdm(shard_paths(shard_dir), desc="latent stats", unit="shard"):
        part = accumulate(((r.latent, r.n_frames) for r in read_shard(path, split=split)), total.dim)
        total.merge(part)
    if total.count == 0:
        raise ValueError(
            f"{shard_dir}: no clips of split {split!r} in the shards; check the prepare stage's splits"
        )
    return total


def load_stats(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), var (D,)) float64 from a stats.json written by the stats stage."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: latent stats not found; run `python -m pipelines.stats`")
    data = json.loads(p.read_text())
    mean = np.asarray(data["mean"], dtype=np.float64)
    var = np.asarray(data["var"], dtype=np.float64)
    if mean.shape != var.shape or mean.ndim != 1:
        raise ValueError(f"{p}: mean and var must be equal-length lists")
    return mean, var


VAR_FLOOR = 1e-8  # channels with (near-)zero variance are not blown up by the standardisation


@dataclass(frozen=True)
class Standardiser:
    """Per-channel standardisation ``(z - mean) / std`` with std = sqrt(max(var, VAR_FLOOR)); mean, var (D,)."""

    mean: tuple[float, ...]
    var: tuple[float, ...]

    @classmethod
    def from_json(cls, path: str | Path) -> Standardiser:
        """Read ``stats.json`` ({"count", "mean": [D], "var": [D], ...}) and check it."""
        mean, var = load_stats(path)
        if mean.size == 0 or not (np.isfinite(mean).all() and np.isfinite(var).all()) or (var < 0).any():
            raise ValueError(
                f"{path}: mean/var must be non-empty, finite, var >= 0; re-run `dvc repro stats`"
            )
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in var))

    @property
    def dim(self) -> int:
        return len(self.mean)

    def _tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=torch.float64)
        std = torch.tensor(self.var, dtype=torch.float64).clamp_min(VAR_FLOOR).sqrt()
        shape = (1, -1, 1) if like.dim() == 3 else (-1, 1)
        return (mean.view(shape).to(like.device, like.dtype), std.view(shape).to(like.device, like.dtype))

    def standardise(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D, T) or (D, T) codec latents -> standardised latents of the same shape."""
        mean, std = self._tensors(z)
        return (z - mean) / std

    def destandardise(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`standardise`: z (B, D, T) or (D, T) -> codec latents."""
        mean, std = self._tensors(z)
        return z * std + mean
