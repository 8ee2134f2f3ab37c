"""Training data: latent clips from the Parquet shards, standardised, cropped, batched with padding masks.

* Training reads crops from the packed store (``model.data.store.PackedClips``, one positioned read per crop:
  memory does not grow with the data); :func:`load_split` still reads a split of the Parquet shards into memory
  (:class:`LatentClips`, for small sets and tests). Both offer ``window(i, start, frames)`` (:class:`Clips`).
* Standardisation ``(z - mean) / sqrt(var)`` per channel with ``data/latents/stats.json`` (:class:`Standardiser`).
* Text embeddings come from :class:`model.training.text_bank.TextBank` (computed once per caption, cached on disk).
* :class:`TrainBatches` assembles batches ahead of the step in a background thread (``prefetch``), in pinned
  memory when training runs on CUDA (``pin_memory``), so the step copies them with ``non_blocking=True``.
* :func:`collate` checks the values the network's forward no longer reads (every row has a valid frame and a
  real text token; masks are right-padded by construction), on CPU, where that costs no device sync.
* Replay (``train.replay``): :class:`TrainBatches` can fill ``replay_rows`` of every batch from a second set of
  clips (another store's train split) with its own sampler; :class:`JoinedClips` numbers them after this run's.
* :class:`ClipSampler` is an endless, seeded, epoch-wise shuffle whose state is (epoch, position); each of
  ``world_size`` ranks walks its own disjoint slice of every epoch. Crops are a pure function of
  (seed, epoch, clip), so restoring the sampler state restores the exact batch sequence.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from model.data.shards import read_shard, shard_metadata, shard_paths
from model.data.stats import Standardiser
from model.network.backbone import check_input_values
from model.training.text_bank import TextBank

logger = logging.getLogger(__name__)


class Clips(Protocol):
    """What training reads from a split: in memory (:class:`LatentClips`) or from the packed store (``PackedClips``)."""

    captions: Sequence[str]
    dim: int
    frame_rate: float

    def __len__(self) -> int: ...

    def length(self, index: int) -> int: ...

    def window(self, index: int, start: int, frames: int) -> np.ndarray: ...

    def head(self, n: int) -> Clips: ...


@dataclass(frozen=True)
class Batch:
    """x (B, D, F) standardised latents (zero on pads), mask (B, F) bool, text (B, L, E), text_mask (B, L)."""

    x: torch.Tensor
    mask: torch.Tensor
    text: torch.Tensor
    text_mask: torch.Tensor
    clip_indices: tuple[int, ...]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """On ``device``; ``non_blocking`` copies asynchronously (from pinned memory: :meth:`pin_memory`)."""
        return Batch(
            self.x.to(device, non_blocking=non_blocking),
            self.mask.to(device, non_blocking=non_blocking),
            self.text.to(device, non_blocking=non_blocking),
            self.text_mask.to(device, non_blocking=non_blocking),
            self.clip_indices,
        )

    def pin_memory(self) -> Batch:
        """A copy in page-locked host memory (CUDA only), which a non-blocking copy to the GPU needs."""
        return Batch(
            self.x.pin_memory(),
            self.mask.pin_memory(),
            self.text.pin_memory(),
            self.text_mask.pin_memory(),
            self.clip_indices,
        )


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
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "n_items": self.n_items,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        for key in ("seed", "n_items", "world_size"):
            if int(state[key]) != getattr(self, key):
                raise ValueError(
                    f"sampler state has {key}={state[key]} but this run has {getattr(self, key)}"
                )
        if not 0 <= int(state["position"]) < self.per_rank:
            raise ValueError(f"sampler state position {state['position']} outside [0, {self.per_rank})")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def crop_start(n_frames: int, frames: int, rng: np.random.Generator | None) -> int:
    """Start of a ``frames`` window in a clip of ``n_frames``: uniform if rng is given, else centred; 0 if short."""
    slack = n_frames - frames
    if slack <= 0:
        return 0
    return int(rng.integers(0, slack + 1)) if rng is not None else slack // 2


def collate(
    clips: Clips,
    items: Sequence[tuple[int, int | None]],
    frames: int,
    seed: int,
    standardiser: Standardiser,
    texts: TextBank,
) -> Batch:
    """(clip index, epoch or None) items -> Batch of width ``frames``; epoch None means a centred crop.

    The random crop of clip i in epoch e uses ``default_rng([seed, e, i])``, a pure function of the item; only
    the crop's frames are read (one contiguous read from a packed store).
    """
    x = torch.zeros(len(items), clips.dim, frames)
    mask = torch.zeros(len(items), frames, dtype=torch.bool)
    for row, (index, epoch) in enumerate(items):
        rng = None if epoch is None else np.random.default_rng([seed, epoch, index])
        start = crop_start(clips.length(index), frames, rng)
        window = torch.from_numpy(np.ascontiguousarray(clips.window(index, start, frames), dtype=np.float32))
        if window.shape[1] == 0:
            raise ValueError(f"clip {index} has no frames at {start}: re-run the pack stage")
        x[row, :, : window.shape[1]] = standardiser.standardise(window)
        mask[row, : window.shape[1]] = True
    text, text_mask = texts.batch([clips.captions[i] for i, _ in items])
    check_input_values(text_mask, mask)  # here, on CPU: the network's forward reads no values
    return Batch(x, mask, text, text_mask, tuple(i for i, _ in items))


@dataclass(frozen=True)
class JoinedClips:
    """``first`` then ``second`` as one set of clips (index ``len(first) + i`` is ``second``'s clip i), for the
    training stream (no ``head``)."""

    first: Clips
    second: Clips

    def __post_init__(self) -> None:
        if self.first.dim != self.second.dim:
            raise ValueError(f"cannot join clips of {self.first.dim} and {self.second.dim} latent channels")

    @property
    def dim(self) -> int:
        return self.first.dim

    @property
    def frame_rate(self) -> float:
        return self.first.frame_rate

    @property
    def captions(self) -> tuple[str, ...]:
        return (*self.first.captions, *self.second.captions)

    def _locate(self, index: int) -> tuple[Clips, int]:
        n = len(self.first)
        return (self.first, index) if index < n else (self.second, index - n)

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def length(self, index: int) -> int:
        clips, i = self._locate(index)
        return clips.length(i)

    def window(self, index: int, start: int, frames: int) -> np.ndarray:
        clips, i = self._locate(index)
        return clips.window(i, start, frames)


class TrainBatches:
    """The endless training stream: ``next()`` -> Batch of ``batch_size`` random crops; resumable.

    With ``replay`` clips, the last ``replay_rows`` rows of every batch come from them, drawn by a second sampler
    (same seed and ranks, its own epochs), the first ``batch_size - replay_rows`` from ``clips``; the state then
    holds both samplers' positions.

    With ``prefetch`` > 0 a background thread assembles the next ``prefetch`` batches while the caller trains on
    the current one. The item order is drawn on the caller's thread, so ``state_dict`` is the state after the
    batches handed out (not those in flight) and a resume replays exactly the same sequence.
    ``wait_s``/``load_s`` add up the time ``next()`` blocked and the time spent assembling batches.
    ``pin_memory`` (for CUDA training) puts each batch in page-locked memory, in the background thread.
    """

    def __init__(
        self,
        clips: Clips,
        texts: TextBank,
        standardiser: Standardiser,
        batch_size: int,
        frames: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        prefetch: int = 0,
        pin_memory: bool = False,
        replay: Clips | None = None,
        replay_rows: int = 0,
    ):
        if len(clips) == 0:
            raise ValueError("no training clips: the shards have no rows with split == 'train'")
        if standardiser.dim != clips.dim:
            raise ValueError(f"stats.json has {standardiser.dim} channels but the shards have {clips.dim}")
        if replay is not None and not 0 < replay_rows < batch_size:
            raise ValueError(f"{replay_rows} replay rows do not fit a batch of {batch_size}")
        self.texts, self.standardiser = texts, standardiser
        self.batch_size, self.frames, self.seed = batch_size, frames, seed
        self.sampler = ClipSampler(len(clips), seed, rank, world_size)
        self.clips: Clips = clips
        self.replay: ClipSampler | None = None
        self.replay_rows = 0
        if replay is not None:
            if len(replay) == 0:
                raise ValueError("no replay clips: train.replay.store has no train split rows")
            self.clips = JoinedClips(clips, replay)
            self.replay = ClipSampler(len(replay), seed, rank, world_size)
            self.replay_rows, self._offset = replay_rows, len(clips)
        self.prefetch = max(0, int(prefetch))
        self.pin_memory = pin_memory
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="batches") if self.prefetch else None
        self._pending: deque[tuple[Future, dict[str, Any]]] = deque()
        self._handed_out = self._state()
        self._lock = threading.Lock()
        self.wait_s = self.load_s = 0.0
        self.served = 0

    def _assemble(self, items: list[tuple[int, int]]) -> Batch:
        started = time.perf_counter()
        batch = collate(self.clips, items, self.frames, self.seed, self.standardiser, self.texts)
        if self.pin_memory:
            batch = batch.pin_memory()
        with self._lock:
            self.load_s += time.perf_counter() - started
        return batch

    def _take(self) -> list[tuple[int, int]]:
        """The next batch's (clip index, epoch) items: this run's clips, then the replay rows (indices after them)."""
        if self.replay is None:
            return self.sampler.take(self.batch_size)
        own = self.sampler.take(self.batch_size - self.replay_rows)
        return own + [(self._offset + i, epoch) for i, epoch in self.replay.take(self.replay_rows)]

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.sampler.state_dict()
        if self.replay is not None:
            state["replay"] = self.replay.state_dict()
        return state

    def next(self) -> Batch:
        started = time.perf_counter()
        if self._pool is None:
            batch = self._assemble(self._take())
            self._handed_out = self._state()
        else:
            while len(self._pending) < self.prefetch + 1:
                items = self._take()
                self._pending.append((self._pool.submit(self._assemble, items), self._state()))
            future, state = self._pending.popleft()
            batch = future.result()
            self._handed_out = state
        self.wait_s += time.perf_counter() - started
        self.served += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return dict(self._handed_out)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for future, _ in self._pending:
            future.cancel()
        for future, _ in self._pending:
            if not future.cancelled():
                future.result()
        self._pending.clear()
        if (self.replay is not None) != ("replay" in state):
            raise ValueError(
                "the checkpoint's sampler state and this run disagree on train.replay.store (one replays, the "
                "other does not); resume with the checkpoint's train.replay settings"
            )
        self.sampler.load_state_dict({k: v for k, v in state.items() if k != "replay"})
        if self.replay is not None:
            self.replay.load_state_dict(state["replay"])
        self._handed_out = self._state()

    def close(self) -> None:
        """Stop the background thread (batches in flight are dropped)."""
        if self._pool is not None:
            self.load_state_dict(self._handed_out)
            self._pool.shutdown(wait=True)
            self._pool = None


def validation_batches(
    clips: Clips, texts: TextBank, standardiser: Standardiser, batch_size: int, frames: int
) -> Iterator[Batch]:
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

    def length(self, index: int) -> int:
        return int(self.latents[index].shape[1])

    def window(self, index: int, start: int, frames: int) -> np.ndarray:
        """Frames [start, start + frames) of clip ``index`` (clipped to its end) as (D, w)."""
        return self.latents[index][:, start : start + frames]

    def head(self, n: int) -> LatentClips:
        return LatentClips(self.latents[:n], self.captions[:n], self.track_ids[:n], self.dim, self.frame_rate)


def load_split(shards_dir: str | Path, split: str) -> LatentClips:
    """Clips of one split from every shard under ``shards_dir``; non-finite latents are an error."""
    meta = shard_metadata(shards_dir)
    latents, captions, track_ids = [], [], []
    for path in tqdm(shard_paths(shards_dir), desc=f"loading {split} shards", unit="shard", leave=False):
        for rec in read_shard(path, split=split):
            if not 0 < rec.n_frames <= rec.latent.shape[1]:
                raise ValueError(
                    f"{path}: track {rec.track_id} clip {rec.clip_index} has n_frames={rec.n_frames} "
                    f"outside [1, {rec.latent.shape[1]}]; re-run the encode stage"
                )
            latent = np.ascontiguousarray(rec.latent[:, : rec.n_frames])
            if not np.isfinite(latent).all():
                raise ValueError(
                    f"{path}: track {rec.track_id} clip {rec.clip_index} has NaN/inf latents; "
                    "the encode stage should have rejected it - re-run `dvc repro encode`"
                )
            latents.append(latent)
            captions.append(rec.caption)
            track_ids.append(rec.track_id)
    logger.info("%s: %d %s clips, latent dim %d", shards_dir, len(latents), split, meta.latent_shape[0])
    return LatentClips(
        tuple(latents), tuple(captions), tuple(track_ids), meta.latent_shape[0], meta.frame_rate
    )
