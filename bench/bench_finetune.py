"""Full fine-tuning against LoRA on CPU: trainable parameters, time per training step and peak memory of the real
training step (batch assembly, flow loss, backward, clip, AdamW, EMA), side by side.

Each measurement runs in a fresh process (so its peak resident memory is its own): the network is built, loaded
with "base" weights, optionally wrapped in LoRA adapters (rank 8 on the default ``train.lora.targets``), then the
peak-RSS counter is reset (``/proc/self/clear_refs``) and ``--steps`` timed steps run after ``--warmup``. "training
MB" is that peak minus the process's resident memory before the network was built (peft imported in both modes):
weights, gradients, AdamW moments, EMA and activations; "peak MB" is the whole process. Rounds
alternate full / LoRA so both see the same machine load; the table reports medians over ``--rounds``.

Configs: ``embedded`` (params.yaml's network, batch 8 × 64 frames, 64-bin mel latents, MiniLM width 384) and
``wide`` (the paper's block widths — hidden 512, expand 2, d_state 16, 8 heads — with 8 blocks instead of 24,
latents 128, text 768, batch 2 × 128 frames; a paper-size full fine-tune needs ~4 GB for weights, gradients, AdamW
moments and EMA, more than this shared machine allows one job).

Run: .venv/bin/python bench/bench_finetune.py  ->  prints a table, writes bench/results/finetune.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.flow.lora import LoraSettings, add_lora  # noqa: E402
from model.network.backbone import VelocityNet, VelocityNetConfig  # noqa: E402
from model.training.config import TrainConfig  # noqa: E402
from model.training.loop import Trainer  # noqa: E402
from pipelines.common.params import config_of, load_params  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import random_batches  # noqa: E402

CONFIGS = {
    "embedded": {"latent_dim": 64, "text_dim": 384, "batch": 8, "frames": 64, "network": {}},
    "wide": {
        "latent_dim": 128,
        "text_dim": 768,
        "batch": 2,
        "frames": 128,
        "network": {"hidden": 512, "depth": 8, "d_state": 16, "expand": 2, "heads": 8},
    },
}
MODES = ("full", "lora")
LORA_RANK = 8


def rss_bytes(field: str) -> int:
    """VmRSS / VmHWM of this process in bytes."""
    line = next(x for x in open("/proc/self/status") if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def build_trainer(name: str, mode: str, params_path: str, tmp: Path) -> Trainer:
    params = load_params(params_path)
    spec = CONFIGS[name]
    net_cfg = config_of(
        VelocityNetConfig, params.model, latent_dim=spec["latent_dim"], text_dim=spec["text_dim"]
    )
    net_cfg = dataclasses.replace(net_cfg, scan_backend="torch", **spec["network"])
    train = dataclasses.replace(
        config_of(TrainConfig, params.train),
        steps=10_000,
        batch_size=spec["batch"],
        frames=spec["frames"],
        ckpt_dir=str(tmp / "ck"),
    )
    batches, texts, stats = random_batches(net_cfg, train.batch_size, spec["frames"], clips=32)
    torch.manual_seed(0)
    net = VelocityNet(net_cfg)
    with torch.no_grad():  # "base" weights: off the zero-initialised gates, so every block carries gradient
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    if mode == "lora":
        lora = dataclasses.replace(
            config_of(LoraSettings, params.train.lora), rank=LORA_RANK, alpha=2.0 * LORA_RANK
        )
        add_lora(net, lora)
    return Trainer(
        net, train, batches, texts, stats, None, {}, torch.device("cpu"), live_dir=str(tmp / "live")
    )


def measure_one(name: str, mode: str, params_path: str, warmup: int, steps: int) -> dict:
    import peft  # noqa: F401  (imported in both modes, so the baseline below holds the same modules)

    baseline = rss_bytes("VmRSS")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(name, mode, params_path, Path(tmp))
        total = sum(p.numel() for p in trainer.net.parameters())
        trainable = sum(p.numel() for p in trainer.net.parameters() if p.requires_grad)
        for _ in range(warmup):
            trainer.train_step()
        before = rss_bytes("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the peak of the timed steps alone
        times, cpu = [], []
        for _ in range(steps):
            started, started_cpu = time.perf_counter(), time.process_time()
            trainer.train_step()
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        return {
            "config": name,
            "mode": mode,
            "parameters": total,
            "trainable": trainable,
            "s_per_step": statistics.median(times),
            "cpu_s_per_step": statistics.median(cpu),
            "peak_rss_mb": rss_bytes("VmHWM") / 2**20,
            "training_mb": (rss_bytes("VmHWM") - baseline) / 2**20,
            "rss_before_steps_mb": before / 2**20,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    # one thread: on the shared machine two OpenMP threads stall each other (measured 10x slower steps under load)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default="bench/results/finetune.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure_one(*args.one, args.params, args.warmup, args.steps)))
        return
    runs: dict[tuple[str, str], list[dict]] = {}
    for name in args.configs:
        for r in range(args.rounds):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                cmd = [sys.executable, __file__, "--one", name, mode, "--params", args.params]
                cmd += [
                    "--warmup",
                    str(args.warmup),
                    "--steps",
                    str(args.steps),
                    "--threads",
                    str(args.threads),
                ]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                runs.setdefault((name, mode), []).append(json.loads(out.strip().splitlines()[-1]))
                print(
                    f"{name} {mode} round {r + 1}: {runs[(name, mode)][-1]['s_per_step']:.3f} s/step",
                    flush=True,
                )
    rows = []
    for (name, mode), found in runs.items():
        rows.append(
            {
                "config": name,
                "mode": mode,
                "parameters": found[0]["parameters"],
                "trainable": found[0]["trainable"],
                "s_per_step": statistics.median(r["s_per_step"] for r in found),
                "cpu_s_per_step": statistics.median(r["cpu_s_per_step"] for r in found),
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in found),
                "training_mb": statistics.median(r["training_mb"] for r in found),
                "rss_before_steps_mb": statistics.median(r["rss_before_steps_mb"] for r in found),
                "rounds": len(found),
            }
        )
    print(
        f"{'config':<9} {'mode':<5} {'trainable':>12} {'of':>12} {'s/step':>8} {'cpu s/step':>10} {'peak MB':>8}"
    )
    for r in rows:
        print(
            f"{r['config']:<9} {r['mode']:<5} {r['trainable']:>12,} {r['parameters']:>12,} {r['s_per_step']:>8.3f} "
            f"{r['cpu_s_per_step']:>10.3f} {r['peak_rss_mb']:>8.0f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"threads": args.threads, "torch": torch.__version__, "machine": platform.machine()}
    meta["load_average"] = os.getloadavg()
    out.write_text(json.dumps({**meta, "lora_rank": LORA_RANK, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
