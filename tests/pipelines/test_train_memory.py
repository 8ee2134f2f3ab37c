"""Training memory does not grow with the data: > 1 GB of latents in shards, packed and trained on for a few steps
in a fresh process whose peak RSS stays far below the store size (and the packing process's too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.model.training.fixtures import PRINT_PEAK_RSS, TRAIN_AND_MEASURE, tiny_params, write_random_shards

REPO = Path(__file__).resolve().parents[2]
PACK_AND_MEASURE = (
    """
import sys
from pipelines import pack
pack.main(["--params", sys.argv[1]])
"""
    + PRINT_PEAK_RSS
)


def peak_rss(script: str, *args: str, cwd: Path) -> int:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return int(done.stdout.strip().splitlines()[-1])


def train_peak_rss(root: Path, n_clips: int) -> tuple[int, int, int]:
    """(train-clip latent bytes, peak RSS of packing, peak RSS of training) for ``n_clips`` random clips."""
    data_bytes = write_random_shards(root, n_clips, dim=64, width=1024)
    params = tiny_params(root, steps=3, batch_size=4, frames=64, val_every=3, ckpt_every=3, val_clips=8)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    pack_rss = peak_rss(PACK_AND_MEASURE, str(root / "params.yaml"), cwd=root)
    train_rss = peak_rss(TRAIN_AND_MEASURE, str(root / "params.yaml"), str(root / "dvclive"), cwd=root)
    return data_bytes, pack_rss, train_rss


@pytest.mark.slow
def test_training_memory_stays_far_below_a_gigabyte_store(tmp_path):
    small_bytes, _, small_rss = train_peak_rss(tmp_path / "small", 32)
    big_bytes, pack_rss, big_rss = train_peak_rss(tmp_path / "big", 8192)  # 8192 x 64 x 1024 x 2 B = 1.07 GB
    print(
        f"latents {big_bytes / 2**20:.0f} MiB; peak RSS: train {small_rss / 2**20:.0f} MiB (32 clips), "
        f"{big_rss / 2**20:.0f} MiB (8192 clips); pack {pack_rss / 2**20:.0f} MiB"
    )
    store = tmp_path / "big" / "store" / "train" / "latents.npy"
    assert big_bytes >= 2**30 and store.stat().st_size >= big_bytes
    # 256x the data, yet the training process grows by < 3 % of the data (~570 MB of it is torch and the
    # interpreter, whatever the data), and stays far below the store size
    assert big_rss - small_rss < 0.03 * big_bytes, (small_rss, big_rss)
    assert big_rss < 0.6 * big_bytes, big_rss
    assert pack_rss < 0.6 * big_bytes, pack_rss  # packing streams shard by shard
