"""Training data: latent clips from the Parquet shards, standardised, cropped, batched with padding masks.

* Clips are read once (``load_clips``) from ``data/latents/shards/shard-*.parquet`` (format in
  docs/ARCHITECTURE.md), keeping only each clip's valid frames as float16 (D, n_frames); non-finite latents are an
  error naming the shard and the track.
* Standardisation ``(z - mean) / sqrt(var)`` per channel with ``data/latents/stats.json`` (:class:`Standardiser`).
* Text embeddings are computed once per unique caption at start-up (:class:`TextBank`).
* :class:`ClipSampler` is an endless, seeded, epoch-wise shuffle whose state is (epoch, position); each of
  ``world_size`` ranks walks its own disjoint slice of every epoch. Crops are a pure function of
  (seed, epoch, clip), so restoring the sampler state restores the exact batch sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from model.data.shards import read_shard, shard_metadata, shard_paths
from model.data.stats import Standardiser

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class TextBank:
    """Token embeddings per unique caption, real tokens only: caption -> (L_i, E) float32; plus the null text."""

    embeddings: dict[str, torch.Tensor]
    null: torch.Tensor
    dim: int

    @classmethod
    def build(cls, encoder: Any, captions: Sequence[str], batch_size: int = 64) -> TextBank:
        """Encode each distinct caption once with ``encoder.encode(list[str]) -> (emb (B, L, E), mask (B, L))``."""
        unique = list(dict.fromkeys(captions))
        bank: dict[str, torch.Tensor] = {}
        for start in tqdm(range(0, len(unique), batch_size), desc="text embeddings", unit="batch", leave=False):
            chunk = unique[start : start + batch_size]
            bank.update(zip(chunk, _real_tokens(*encoder.encode(chunk)), strict=True))
        null = _real_tokens(*encoder.encode([""]))[0]
        logger.info("encoded %d unique captions with %s (dim %d)", len(unique), encoder.name, encoder.dim)
        return cls(bank, null, int(encoder.dim))

    def batch(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """captions -> (emb (B, L, E) zero-padded, mask (B, L) bool) with L the longest caption in the batch."""
        tokens = [self.embeddings[c] for c in captions]
        return pad_tokens(tokens, self.dim)

    def null_condition(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The CFG null condition: (emb (1, L0, E), mask (1, L0))."""
        return pad_tokens([self.null], self.dim)


def _real_tokens(emb: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for row, row_mask in zip(emb, mask, strict=True):
        tokens = row[row_mask.bool().to(row.device)].detach().float().cpu()
        if tokens.shape[0] == 0:
            raise ValueError("text encoder returned no real tokens for a caption; every text needs >= 1 token")
        out.append(tokens)
    return out


def pad_tokens(tokens: Sequence[torch.Tensor], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (L_i, E) -> (emb (B, L, E), mask (B, L) bool), right-padded with zeros."""
    length = max(t.shape[0] for t in tokens)
    emb = torch.zeros(len(tokens), length, dim)
    mask = torch.zeros(len(tokens), length, dtype=torch.bool)
    for i, t in enumerate(tokens):
        emb[i, : t.shape[0]] = t
        mask[i, : t.shape[0]] = True
    return emb, mask


@dataclass(frozen=True)
class Batch:
    """x (B, D, F) standardised latents (zero on pads), mask (B, F) bool, text (B, L, E), text_mask (B, L)."""

    x: torch.Tensor
    mask: torch.Tensor
    text: torch.Tensor
    text_mask: torch.Tensor
    clip_indices: tuple[int, ...]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.x.to(device), self.mask.to(device), self.text.to(device), self.text_mask.to(device),
                     self.clip_indices)


class ClipSampler:
    """Endless seeded shuffle over ``n_items`` clips; state (epoch, position) + seed.

    Epoch e is the permutation ``default_rng([seed, e]).permutation(n_items)``; rank r of ``world_size`` takes
    ``perm[r::world_size]`` truncated to ``n_items // world_size`` items, so every rank has the same epoch
    length and the ranks' slices are disjoint. ``position`` counts this rank's items consumed in the epoch.
    """

    def __init__(self, n_items: int, seed: int, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if n_items // world_size < 1:
            raise ValueError(f"{n_items} training clips cannot be split across {world_size} workers")
        self.n_items, self.seed, self.rank, self.world_size = n_items, int(seed), rank, world_size
        self.per_rank = n_items // world_size
        self.epoch, self.position = 0, 0
        self._order_epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def _epoch_order(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_items)
            self._order, self._order_epoch = perm[self.rank :: self.world_size][: self.per_rank], self.epoch
        return self._order

    def take(self, k: int) -> list[tuple[int, int]]:
        """The next ``k`` items as (clip index, epoch), crossing epoch boundaries as needed."""
        out = []
        for _ in range(k):
            out.append((int(self._epoch_order()[self.position]), self.epoch))
            self.position += 1
            if self.position == self.per_rank:
                self.epoch, self.position = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position, "n_items": self.n_items,
                "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        for key in ("seed", "n_items", "world_size"):
            if int(state[key]) != getattr(self, key):
                raise ValueError(f"sampler state has {key}={state[key]} but this run has {getattr(self, key)}")
        if not 0 <= int(state["position"]) < self.per_rank:
            raise ValueError(f"sampler state position {state['position']} outside [0, {self.per_rank})")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def crop_start(n_frames: int, frames: int, rng: np.random.Generator | None) -> int:
    """Start of a ``frames`` window in a clip of ``n_frames``: uniform if rng is given, else centred; 0 if short."""
    slack = n_frames - frames
    if slack <= 0:
        return 0
    return int(rng.integers(0, slack + 1)) if rng is not None else slack // 2


def collate(clips: LatentClips, items: Sequence[tuple[int, int | None]], frames: int, seed: int,
            standardiser: Standardiser, texts: TextBank) -> Batch:
    """(clip index, epoch or None) items -> Batch of width ``frames``; epoch None means a centred crop.

    The random crop of clip i in epoch e uses ``default_rng([seed, e, i])``, a pure function of the item.
    """
    dim = clips.dim
    x = torch.zeros(len(items), dim, frames)
    mask = torch.zeros(len(items), frames, dtype=torch.bool)
    for row, (index, epoch) in enumerate(items):
        latent = clips.latents[index]
        rng = None if epoch is None else np.random.default_rng([seed, epoch, index])
        start = crop_start(latent.shape[1], frames, rng)
        window = torch.from_numpy(latent[:, start : start + frames].astype(np.float32))
        x[row, :, : window.shape[1]] = standardiser.standardise(window)
        mask[row, : window.shape[1]] = True
    text, text_mask = texts.batch([clips.captions[i] for i, _ in items])
    return Batch(x, mask, text, text_mask, tuple(i for i, _ in items))


class TrainBatches:
    """The endless training stream: ``next()`` -> Batch of ``batch_size`` random crops; resumable."""

    def __init__(self, clips: LatentClips, texts: TextBank, standardiser: Standardiser, batch_size: int,
                 frames: int, seed: int, rank: int = 0, world_size: int = 1):
        if len(clips) == 0:
            raise ValueError("no training clips: the shards have no rows with split == 'train'")
        if standardiser.dim != clips.dim:
            raise ValueError(f"stats.json has {standardiser.dim} channels but the shards have {clips.dim}")
        self.clips, self.texts, self.standardiser = clips, texts, standardiser
        self.batch_size, self.frames, self.seed = batch_size, frames, seed
        self.sampler = ClipSampler(len(clips), seed, rank, world_size)

    def next(self) -> Batch:
        return collate(self.clips, self.sampler.take(self.batch_size), self.frames, self.seed,
                       self.standardiser, self.texts)

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)


def validation_batches(clips: LatentClips, texts: TextBank, standardiser: Standardiser, batch_size: int,
                       frames: int) -> Iterator[Batch]:
    """Every validation clip once, in order, centred crops: a deterministic pass."""
    for start in range(0, len(clips), batch_size):
        items = [(i, None) for i in range(start, min(start + batch_size, len(clips)))]
        yield collate(clips, items, frames, 0, standardiser, texts)


@dataclass(frozen=True)
class LatentClips:
    """One split in memory: latents[i] (D, n_frames_i) float16 (valid frames only), captions, track ids."""

    latents: tuple[np.ndarray, ...]
    captions: tuple[str, ...]
    track_ids: tuple[str, ...]
    dim: int
    frame_rate: float

    def __len__(self) -> int:
        return len(self.latents)


def load_split(shards_dir: str | Path, split: str) -> LatentClips:
    """Clips of one split from every shard under ``shards_dir``; non-finite latents are an error."""
    meta = shard_metadata(shards_dir)
    latents, captions, track_ids = [], [], []
    for path in tqdm(shard_paths(shards_dir), desc=f"loading {split} shards", unit="shard", leave=False):
        for rec in read_shard(path, split=split):
            if not 0 < rec.n_frames <= rec.latent.shape[1]:
                raise ValueError(f"{path}: track {rec.track_id} clip {rec.clip_index} has n_frames={rec.n_frames} "
                                 f"outside [1, {rec.latent.shape[1]}]; re-run the encode stage")
            latent = np.ascontiguousarray(rec.latent[:, : rec.n_frames])
            if not np.isfinite(latent).all():
                raise ValueError(f"{path}: track {rec.track_id} clip {rec.clip_index} has NaN/inf latents; "
                                 "the encode stage should have rejected it - re-run `dvc repro encode`")
            latents.append(latent)
            captions.append(rec.caption)
            track_ids.append(rec.track_id)
    logger.info("%s: %d %s clips, latent dim %d", shards_dir, len(latents), split, meta.latent_shape[0])
    return LatentClips(tuple(latents), tuple(captions), tuple(track_ids), meta.latent_shape[0], meta.frame_rate)
