"""Tiny training fixtures: Parquet latent shards in the encode stage's format, stats.json, a word-hash text
encoder and a params tree for a network small enough to train for a few steps in well under a second."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.data.shards import ClipRecord, ShardMetadata, shard_name, write_shard
from model.data.store import pack_store
from model.training.config import TrainJob

CAPTIONS = ("calm piano", "fast rock drums", "dark ambient pad", "happy folk guitar")


def write_fixture_shards(
    root: Path,
    n_train: int = 12,
    n_val: int = 4,
    dim: int = 4,
    width: int = 24,
    seed: int = 0,
    rows_per_shard: int = 5,
) -> Path:
    """Shards under root/shards (clip lengths vary, some shorter than a crop), their packed store root/store
    (what the pack stage writes) and root/stats.json."""
    rng = np.random.default_rng(seed)
    meta = ShardMetadata(codec="fixture", settings={}, latent_shape=(dim, width), frame_rate=10.0)
    records = []
    for i in range(n_train + n_val):
        n_frames = int(rng.integers(width // 2, width + 1))
        latent = np.zeros((dim, width), dtype=np.float16)
        caption = CAPTIONS[i % len(CAPTIONS)]
        # caption-dependent level + a slow wave: something a conditional model can learn
        level = (i % len(CAPTIONS)) - 1.5
        frames = np.arange(n_frames) / 4.0
        latent[:, :n_frames] = (
            3.0
            + level
            + np.sin(frames + np.arange(dim)[:, None])
            + 0.1 * rng.standard_normal((dim, n_frames))
        )
        records.append(
            ClipRecord(
                track_id=f"track_{i:07d}",
                clip_index=0,
                start_s=0.0,
                n_frames=n_frames,
                latent=latent,
                caption=caption,
                split="train" if i < n_train else "validation",
            )
        )
    shards = root / "shards"
    for k in range(0, len(records), rows_per_shard):
        write_shard(shards / shard_name(k // rows_per_shard), records[k : k + rows_per_shard], meta)
    valid = np.concatenate(
        [r.latent[:, : r.n_frames].astype(np.float64) for r in records if r.split == "train"], axis=1
    )
    stats = {
        "count": int(valid.shape[1]),
        "mean": valid.mean(axis=1).tolist(),
        "var": valid.var(axis=1).tolist(),
        "split": "train",
        "codec": {"name": "fixture"},
    }
    (root / "stats.json").write_text(json.dumps(stats))
    pack_store(shards, root / "store")
    return shards


class HashTextEncoder:
    """Deterministic stand-in for model/text: a [CLS] token + one seeded random vector per word."""

    name = "hash-words"

    def __init__(self, dim: int = 8):
        self.dim = dim

    def _vector(self, word: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
        return torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = [["[CLS]", *t.split()] for t in texts]
        length = max(len(t) for t in tokens)
        emb = torch.zeros(len(texts), length, self.dim)
        mask = torch.zeros(len(texts), length, dtype=torch.bool)
        for i, words in enumerate(tokens):
            for j, word in enumerate(words):
                emb[i, j] = self._vector(word)
                mask[i, j] = True
        return emb, mask


TINY_MODEL = {
    "hidden": 16,
    "depth": 1,
    "d_state": 4,
    "d_conv": 2,
    "expand": 1,
    "dt_rank": "auto",
    "heads": 2,
    "mlp_ratio": 1.0,
    "time_dim": 8,
    "in_kernel": 3,
    "scan_backend": "torch",
    "precondition": False,
}


def tiny_params(root: Path, **train: Any) -> dict[str, Any]:
    """A full params tree over the fixture data in ``root`` (call write_fixture_shards(root) first)."""
    train_section = {
        "steps": 20,
        "batch_size": 4,
        "frames": 16,
        "lr": 3e-3,
        "weight_decay": 0.01,
        "warmup": 3,
        "grad_clip": 1.0,
        "ema_decay": 0.9,
        "cond_drop": 0.2,
        "t_mean": 0.0,
        "t_std": 1.0,
        "val_every": 10,
        "ckpt_every": 5,
        "keep": 2,
        "log_every": 5,
        "seed": 0,
        "workers": 1,
        "use_gpu": False,
        "ckpt_dir": str(root / "checkpoints"),
        "out_dir": str(root / "final"),
    }
    train_section.update(train)
    return {
        "codec": {"name": "mel"},
        "text": {"encoder": "minilm", "path": "", "max_length": 16},
        "encode": {"out_dir": str(root / "shards"), "stats_path": str(root / "stats.json")},
        "pack": {"out_dir": str(root / "store")},
        "model": dict(TINY_MODEL),
        "train": train_section,
    }


def tiny_job(root: Path, **train: Any) -> TrainJob:
    """The training run of ``tiny_params(root, **train)``, as the train stage builds it."""
    from pipelines.train import train_job
    from tests.defaults import params

    return train_job(params(tiny_params(root, **train)))


def run_killed_at(monkeypatch: Any, step: int, job: TrainJob, live_dir: str) -> None:
    """Run ``job`` and stop it as a kill would when it reaches ``step`` (what it checkpointed before stays)."""
    import pytest

    from model.training.loop import Trainer
    from model.training.setup import run_training

    real_step = Trainer.train_step

    def dying_step(self):
        if self.step == step:
            raise KeyboardInterrupt("simulated kill")
        return real_step(self)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_step", dying_step)
        with pytest.raises(KeyboardInterrupt):
            run_training(job, live_dir=live_dir, text_encoder=HashTextEncoder())


def run_checkpoints(root) -> Path:
    """The one run directory that training under ``root`` wrote (``checkpoints/run-<hash>``)."""
    runs = sorted((Path(root) / "checkpoints").glob("run-*"))
    assert len(runs) == 1, f"expected one run directory, found {runs}"
    return runs[0]


def write_random_shards(
    root: Path,
    n_clips: int,
    dim: int = 64,
    width: int = 512,
    n_val: int = 8,
    rows_per_shard: int = 256,
    seed: int = 0,
) -> int:
    """``n_clips`` train clips (+ ``n_val`` validation) of random float16 latents, full length, written straight
    into shards under root/shards, with a unit stats.json; returns the latent bytes of the train clips."""
    rng = np.random.default_rng(seed)
    meta = ShardMetadata(codec="random", settings={}, latent_shape=(dim, width), frame_rate=10.0)
    total = n_clips + n_val
    for k, first in enumerate(range(0, total, rows_per_shard)):
        rows = range(first, min(first + rows_per_shard, total))
        block = rng.standard_normal((len(rows), dim, width), dtype=np.float32).astype(np.float16)
        records = [
            ClipRecord(
                track_id=f"track_{i:07d}",
                clip_index=0,
                start_s=0.0,
                n_frames=width,
                latent=block[j],
                caption=CAPTIONS[i % len(CAPTIONS)],
                split="train" if i < n_clips else "validation",
            )
            for j, i in enumerate(rows)
        ]
        write_shard(root / "shards" / shard_name(k), records, meta)
    (root / "stats.json").write_text(
        json.dumps(
            {
                "count": 1,
                "mean": [0.0] * dim,
                "var": [1.0] * dim,
                "split": "train",
                "codec": {"name": "random"},
            }
        )
    )
    return n_clips * dim * width * 2


# the process's peak RSS in bytes: VmHWM of /proc/self/status (ru_maxrss would also count the parent's memory
# copied at fork, before exec)
PRINT_PEAK_RSS = """
print(int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]) * 1024)
"""

# run in a fresh process (python -c TRAIN_AND_MEASURE params.yaml live_dir): trains with the word-hash text encoder,
# prints "steps_per_s <median over log windows>" and the process's peak RSS in bytes as the last line
TRAIN_AND_MEASURE = (
    """
import logging, sys
logging.basicConfig(level=logging.INFO)
from model.training.setup import run_training
from pipelines.common.params import load_params
from pipelines.train import train_job
from tests.model.training.fixtures import HashTextEncoder
result = run_training(train_job(load_params(sys.argv[1])), live_dir=sys.argv[2], text_encoder=HashTextEncoder())
print("steps_per_s", result.steps_per_s)
"""
    + PRINT_PEAK_RSS
)
