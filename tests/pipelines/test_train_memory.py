"""Training memory does not grow with the data: > 1 GB of latents in shards, packed and trained on for a few steps
in a fresh process whose peak RSS grows by a few MiB with 256x the data and whose own (anonymous) memory stays far
below the store size (the packing process's too). Why anonymous memory for the absolute bound: tests/memory.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.memory import ANON_PEAK_PRELUDE, PRINT_PEAKS
from tests.model.training.fixtures import tiny_params, write_random_shards

REPO = Path(__file__).resolve().parents[2]
PACK_AND_MEASURE = (
    ANON_PEAK_PRELUDE
    + """
import sys
from pipelines import pack
pack.main(["--params", sys.argv[1]])
"""
    + PRINT_PEAKS
)
TRAIN_AND_MEASURE = (
    ANON_PEAK_PRELUDE
    + """
import logging, sys
logging.basicConfig(level=logging.INFO)
from model.training.setup import run_training
from pipelines.common.params import load_params
from pipelines.train import train_job
from tests.model.training.fixtures import HashTextEncoder
run_training(train_job(load_params(sys.argv[1])), live_dir=sys.argv[2], text_encoder=HashTextEncoder())
"""
    + PRINT_PEAKS
)


def peaks(script: str, *args: str, cwd: Path) -> tuple[int, int]:
    """(peak RSS, peak anonymous memory) in bytes of ``python -c script args``."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rss, anon = done.stdout.strip().splitlines()[-1].split()
    return int(rss), int(anon)


def train_peaks(root: Path, n_clips: int) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """(train-clip latent bytes, peaks of packing, peaks of training) for ``n_clips`` random clips; peaks are
    (RSS, anonymous) in bytes."""
    data_bytes = write_random_shards(root, n_clips, dim=64, width=1024)
    params = tiny_params(root, steps=3, batch_size=4, frames=64, val_every=3, ckpt_every=3, val_clips=8)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    pack = peaks(PACK_AND_MEASURE, str(root / "params.yaml"), cwd=root)
    train = peaks(TRAIN_AND_MEASURE, str(root / "params.yaml"), str(root / "dvclive"), cwd=root)
    return data_bytes, pack, train


@pytest.mark.slow
def test_training_memory_stays_far_below_a_gigabyte_store(tmp_path):
    small_bytes, _, (small_rss, small_anon) = train_peaks(tmp_path / "small", 32)
    big_bytes, (pack_rss, pack_anon), (big_rss, big_anon) = train_peaks(tmp_path / "big", 8192)  # 1.07 GB
    mib = {
        "train 32 clips (RSS, anon)": (small_rss >> 20, small_anon >> 20),
        "train 8192 clips": (big_rss >> 20, big_anon >> 20),
        "pack 8192 clips": (pack_rss >> 20, pack_anon >> 20),
    }
    print(f"latents {big_bytes / 2**20:.0f} MiB; peak MiB {mib}")
    store = tmp_path / "big" / "store" / "train" / "latents.npy"
    assert big_bytes >= 2**30 and store.stat().st_size >= big_bytes
    # 256x the data, yet the training process grows by < 3 % of the data (torch and the interpreter are most of
    # its RSS, whatever the data; this difference compares two processes under the same page cache) ...
    assert big_rss - small_rss < 0.03 * big_bytes, f"peak MiB {mib}"
    # ... and what it holds itself stays far below the store size; so does packing, which streams shard by shard
    assert big_anon < 0.6 * big_bytes, f"peak MiB {mib}"
    assert pack_anon < 0.6 * big_bytes, f"peak MiB {mib}"
    assert big_rss < big_bytes and pack_rss < big_bytes, f"peak MiB {mib}"  # mapped libraries included
