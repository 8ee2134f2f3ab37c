"""Seconds to generate one 10 s clip on CPU: Euler sampling with CFG (one stacked forward per step) + mel decode.

Models: the embedded config (params.yaml ``model:``, mel-codec latents, MiniLM-sized text) and the paper-size
network (``VelocityNetConfig.paper()``, 128-d latents at the paper's 10.766 Hz, T5-sized text). Weights are
randomly initialised (timing only; the output is noise). Text embeddings are random tensors of the encoders'
widths, so text-encoder time is not included.

A guided Euler step costs one forward of batch 2 on fixed shapes, so sampling time = steps × step time. The paper
model's step time is the median of a few timed steps after a warm-up; 100- and 25-step figures are that times
the step count (``"sampling": "extrapolated"``), except the embedded model's 25-step figure, which is a real
end-to-end run (``"measured"``) that also gives its step time. One thread; both wall seconds and process CPU
seconds are recorded: on a shared machine wall time swells with other load, CPU time much less so.
Writes bench/results/generate.json.

    .venv/bin/python bench/bench_generate.py
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.codec import build_codec  # noqa: E402
from model.flow.sampling import GuidedVelocity, integrate  # noqa: E402
from model.network.backbone import VelocityNet, VelocityNetConfig, count_parameters  # noqa: E402
from pipelines.common.params import config_of, load_params  # noqa: E402

SECONDS = 10.0
CFG_SCALE = 3.5
STEP_COUNTS = (100, 25)
PAPER_FRAME_RATE = 44100 / 512 / 8  # ACE-Step DCAE latents
TEXT_TOKENS = 16
OUT = Path("bench/results/generate.json")


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def step_seconds(net: VelocityNet, frames: int, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one CFG-guided velocity evaluation (batch 1 → stacked batch 2)."""
    cfg = net.cfg
    text, null = torch.randn(1, TEXT_TOKENS, cfg.text_dim), torch.randn(1, 2, cfg.text_dim)
    velocity = GuidedVelocity(
        net,
        text,
        torch.ones(1, TEXT_TOKENS, dtype=torch.bool),
        null,
        torch.ones(1, 2, dtype=torch.bool),
        CFG_SCALE,
    )
    x = torch.randn(1, cfg.latent_dim, frames)
    times = []
    with torch.no_grad():
        velocity(x, 0.0)  # warm-up
        for i in range(repeats):
            start = _clock()
            velocity(x, (i + 1) / (repeats + 1))
            times.append(_since(start))
    return statistics.median(w for w, _ in times), statistics.median(c for _, c in times)


def full_run_seconds(net: VelocityNet, frames: int, steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds of a whole guided Euler run."""
    cfg = net.cfg
    text, null = torch.randn(1, TEXT_TOKENS, cfg.text_dim), torch.randn(1, 2, cfg.text_dim)
    velocity = GuidedVelocity(
        net,
        text,
        torch.ones(1, TEXT_TOKENS, dtype=torch.bool),
        null,
        torch.ones(1, 2, dtype=torch.bool),
        CFG_SCALE,
    )
    start = _clock()
    with torch.no_grad():
        integrate(velocity, torch.randn(1, cfg.latent_dim, frames), steps, "euler")
    return _since(start)


def decode_seconds(codec, repeats: int = 2) -> tuple[float, float]:
    """Best (wall, CPU) seconds of decoding 10 s of latents."""
    frames = math.ceil(SECONDS * codec.frame_rate)
    z = torch.randn(1, codec.latent_dim, frames) - 4.0
    times = []
    for _ in range(repeats):
        start = _clock()
        codec.decode(z)
        times.append(_since(start))
    return min(times)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    params = load_params()
    codec = build_codec({**params.codec.model_dump(), "device": "cpu"})
    decode_s = decode_seconds(codec)
    models = {
        "embedded": (
            config_of(VelocityNetConfig, params.model, latent_dim=codec.latent_dim, text_dim=384),
            math.ceil(SECONDS * codec.frame_rate),
            3,
        ),
        "paper": (VelocityNetConfig.paper(), math.ceil(SECONDS * PAPER_FRAME_RATE), 2),
    }
    rows = []
    for name, (cfg, frames, repeats) in models.items():
        net = VelocityNet(cfg).eval()
        measured = {}
        if name == "embedded":  # cheap enough to run 25 steps end to end; that also sets the step time
            measured[25] = full_run_seconds(net, frames, 25)
            per_step = (measured[25][0] / 25, measured[25][1] / 25)
        else:
            per_step = step_seconds(net, frames, repeats)
        for steps in STEP_COUNTS:
            wall, cpu = measured.get(steps, (per_step[0] * steps, per_step[1] * steps))
            rows.append(
                {
                    "model": name,
                    "parameters": count_parameters(net),
                    "latent_shape": [cfg.latent_dim, frames],
                    "steps": steps,
                    "cfg_scale": CFG_SCALE,
                    "sampling": "measured" if steps in measured else "extrapolated",
                    "step_wall_s": round(per_step[0], 4),
                    "step_cpu_s": round(per_step[1], 4),
                    "sampling_wall_s": round(wall, 2),
                    "sampling_cpu_s": round(cpu, 2),
                    "decode_wall_s": round(decode_s[0], 3),
                    "decode_cpu_s": round(decode_s[1], 3),
                    "total_wall_s": round(wall + decode_s[0], 2),
                    "total_cpu_s": round(cpu + decode_s[1], 2),
                }
            )
    result = {
        "what": "seconds to generate one 10 s clip on CPU (Euler + CFG sampling, mel-codec decode)",
        "weights": "randomly initialised (timing only)",
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "codec": codec.settings(),
        "note": "paper model sampled at 10.766 Hz latents (ACE-Step frame rate); decode is the mel codec for both",
        "rows": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{'model':<9} {'params':>12} {'T':>4} {'steps':>5} {'sampling':<12} {'total wall s':>12} "
        f"{'total CPU s':>11} {'(decode CPU s)':>14}"
    )
    for r in rows:
        print(
            f"{r['model']:<9} {r['parameters']:>12,} {r['latent_shape'][1]:>4} {r['steps']:>5} {r['sampling']:<12} "
            f"{r['total_wall_s']:>12.2f} {r['total_cpu_s']:>11.2f} {r['decode_cpu_s']:>14.3f}"
        )
    print(f"weights random (timing only); 'extrapolated' = step time x steps; wrote {OUT}")


if __name__ == "__main__":
    main()
