"""Training throughput on CPU: steps/s of the real training step (batch assembly, flow loss, backward, clip,
AdamW, EMA) for the embedded default (params.yaml: model + train.batch_size/frames) and for one paper-size step
(VelocityNetConfig.paper(), 24 x 512, batch 1, 323 frames = 30 s at 10.77 Hz).

Run: .venv/bin/python bench/bench_train.py  ->  prints a table, writes bench/results/train.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.network.backbone import VelocityNet, VelocityNetConfig, count_parameters  # noqa: E402
from model.training.config import TrainConfig  # noqa: E402
from model.training.data import LatentClips, Standardiser, TrainBatches  # noqa: E402
from model.training.loop import Trainer  # noqa: E402
from model.training.text_bank import TextBank  # noqa: E402
from pipelines.common.params import config_of, load_params  # noqa: E402

# token-embedding widths of the text encoders (model/text), so the bench needs no encoder weights
TEXT_DIMS = {"minilm": 384, "flan-t5": 768}
CAPTION_TOKENS = 12


def random_batches(
    net_cfg: VelocityNetConfig, batch_size: int, frames: int, clips: int, tokens: int = CAPTION_TOKENS
) -> tuple[TrainBatches, TextBank, Standardiser]:
    """Batches over ``clips`` seeded random in-memory clips twice ``frames`` long (so crops are real crops), with 8
    captions of ``tokens`` random text tokens and identity statistics."""
    rng = np.random.default_rng(0)
    latents = tuple(
        rng.standard_normal((net_cfg.latent_dim, 2 * frames)).astype(np.float16) for _ in range(clips)
    )
    data = LatentClips(
        latents,
        tuple(f"caption {i % 8}" for i in range(clips)),
        tuple(map(str, range(clips))),
        net_cfg.latent_dim,
        10.0,
    )
    gen = torch.Generator().manual_seed(0)
    bank = {f"caption {i}": torch.randn(tokens, net_cfg.text_dim, generator=gen) for i in range(8)}
    texts = TextBank.from_tensors(bank, torch.randn(2, net_cfg.text_dim, generator=gen), net_cfg.text_dim)
    stats = Standardiser((0.0,) * net_cfg.latent_dim, (1.0,) * net_cfg.latent_dim)
    return TrainBatches(data, texts, stats, batch_size, frames, seed=0), texts, stats


def make_trainer(
    net_cfg: VelocityNetConfig, train: TrainConfig, batch_size: int, frames: int, clips: int, tmp: Path
) -> Trainer:
    """A Trainer over random in-memory clips (twice ``frames`` long, so crops are real crops)."""
    batches, texts, stats = random_batches(net_cfg, batch_size, frames, clips)
    cfg = dataclasses.replace(
        train, steps=10_000, batch_size=batch_size, frames=frames, ckpt_dir=str(tmp / "ck")
    )
    torch.manual_seed(0)
    return Trainer(
        VelocityNet(net_cfg),
        cfg,
        batches,
        texts,
        stats,
        None,
        {},
        torch.device("cpu"),
        live_dir=str(tmp / "live"),
    )


def time_steps(trainer: Trainer, warmup: int, steps: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per step; CPU time is the figure that survives a shared machine."""
    for _ in range(warmup):
        trainer.train_step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        trainer.train_step()
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def row(
    name: str, trainer: Trainer, batch: int, frames: int, wall: float, cpu: float, steps: int | None
) -> dict:
    return {
        "config": name,
        "params_M": count_parameters(trainer.net) / 1e6,
        "batch": batch,
        "frames": frames,
        "steps_per_s": 1 / wall,
        "wall_s_per_step": wall,
        "cpu_s_per_step": cpu,
        "projected_train_wall_s": steps * wall if steps else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--steps", type=int, default=10, help="timed steps for the embedded config")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument("--out", default="bench/results/train.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    latent_dim = params.codec.mel.n_mels if params.codec.name == "mel" else 128
    text_dim = TEXT_DIMS[params.text.encoder]
    cfg = config_of(VelocityNetConfig, params.model, latent_dim=latent_dim, text_dim=text_dim)
    cfg = dataclasses.replace(cfg, scan_backend="torch")
    train = config_of(TrainConfig, params.train)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        batch, frames = train.batch_size, train.frames
        trainer = make_trainer(cfg, train, batch, frames, 64, Path(tmp))
        rows.append(row("embedded", trainer, batch, frames, *time_steps(trainer, 2, args.steps), train.steps))
        if not args.skip_paper:
            paper = dataclasses.replace(VelocityNetConfig.paper(), scan_backend="torch")
            trainer = make_trainer(paper, train, 1, 323, 2, Path(tmp))
            rows.append(row("paper", trainer, 1, 323, *time_steps(trainer, 0, 1), None))
    print(
        f"{'config':<10} {'params(M)':>10} {'batch':>6} {'frames':>7} {'steps/s':>9} {'wall s/step':>12} "
        f"{'cpu s/step':>11}"
    )
    for r in rows:
        print(
            f"{r['config']:<10} {r['params_M']:>10.2f} {r['batch']:>6} {r['frames']:>7} {r['steps_per_s']:>9.3f} "
            f"{r['wall_s_per_step']:>12.3f} {r['cpu_s_per_step']:>11.3f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": "cpu",
                "threads": args.threads,
                "torch": torch.__version__,
                "machine": platform.machine(),
                "load_average": os.getloadavg(),
                "note": "shared machine: wall timings are noisy; cpu_s_per_step is this process's "
                "CPU time (all threads)",
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
