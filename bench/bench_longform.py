"""Long-form cost: peak memory and seconds per generated second at 10 s, 1, 2 and 3 minutes, BiMamba vs attention.

Networks (random weights: cost only): the embedded one (params.yaml ``model:``, mel-codec latents at its frame
rate, MiniLM-width text) and the paper-size one (``VelocityNetConfig.paper()``, 128-d latents at 10.766 Hz,
T5-width text), each as built (BiMamba mixers) and with every BiMamba replaced by multi-head self-attention of the
same width and heads (``torch.nn.functional.scaled_dot_product_attention``, the fastest attention PyTorch has on
this machine): same blocks, cross-attention, MLPs and adaLN otherwise.

Each (network, backbone) runs in a fresh process on one thread: build, one warm-up evaluation on 16 frames,
then per length (shortest first): free the heap back to the system (``malloc_trim``), reset the kernel's peak-RSS
mark (``/proc/self/clear_refs`` 5), then ``repeats`` guided evaluations (CFG: one forward of batch 2). Recorded: median wall and CPU seconds per evaluation, and the working
memory = peak RSS during those evaluations − RSS before them (weights and inputs excluded). Paper-size timings use
one evaluation per length; seconds per generated second = per-evaluation time × NFE / seconds (extrapolated per
step: an ODE step at fixed length costs the same at every t). The growth exponent is the least-squares slope of
log(cost) vs log(length) over the four lengths (1 = linear, 2 = quadratic).

Last, the embedded model trained by ``make repro`` (``--model-dir``, default models/final) renders one
3-minute clip through the command line (``python -m pipelines.generate "..." --seconds 180``); its wall time and
peak RSS (``wait4`` of that process) are recorded. Writes bench/results/longform.json.

    PYTHONPATH=. .venv/bin/python bench/bench_longform.py [--model-dir models/final] [--skip-cli]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LENGTHS = (10.0, 60.0, 120.0, 180.0)
PAPER_FRAME_RATE = 44100 / 512 / 8
CFG_SCALE = 3.5
TEXT_TOKENS = 16
OUT = ROOT / "bench/results/longform.json"


def _proc_status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status (``VmRSS``: now, ``VmHWM``: peak), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def build_net(model: str, backbone: str):
    """(net, frame_rate) for 'embedded' | 'paper' with 'bimamba' | 'attention' mixers; random weights, eval."""
    import torch

    from model.codec import build_codec
    from model.network.backbone import VelocityNet, VelocityNetConfig
    from pipelines.common.params import config_of, load_params

    if model == "paper":
        cfg, frame_rate = VelocityNetConfig.paper(), PAPER_FRAME_RATE
    else:
        params = load_params(str(ROOT / "params.yaml"))
        codec = build_codec({**params.codec.model_dump(), "device": "cpu"})
        cfg = config_of(VelocityNetConfig, params.model, latent_dim=codec.latent_dim, text_dim=384)
        frame_rate = codec.frame_rate
    cfg = type(cfg)(**{**cfg.to_dict(), "scan_backend": "torch"})
    net = VelocityNet(cfg).eval().requires_grad_(False)
    if backbone == "attention":
        for block in net.blocks:
            block.mixer = SelfAttentionMixer(cfg.hidden, cfg.heads)
    torch.manual_seed(0)
    return net, frame_rate


def SelfAttentionMixer(hidden: int, heads: int):  # noqa: N802 - a class factory, keeps torch import lazy
    import torch
    from torch import nn

    class _Mixer(nn.Module):
        """Bidirectional multi-head self-attention over time, (B, T, H) -> (B, T, H); drop-in for BiMamba."""

        def __init__(self) -> None:
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(hidden, 3 * hidden)
            self.out = nn.Linear(hidden, hidden)

        def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            b, t, h = x.shape
            q, k, v = self.qkv(x).view(b, t, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
            attn_mask = None if mask is None else mask[:, None, None, :]
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
            return self.out(y.transpose(1, 2).reshape(b, t, h))

    return _Mixer()


def measure_lengths(model: str, backbone: str, lengths: list[float], repeats: int) -> list[dict]:
    """In this (fresh) process: per-evaluation time and working memory at each length (seconds of audio)."""
    import ctypes
    import gc

    import torch

    from model.flow.sampling import GuidedVelocity

    torch.set_num_threads(1)
    libc = ctypes.CDLL("libc.so.6")
    net, frame_rate = build_net(model, backbone)
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
    rows = []
    with torch.no_grad():
        velocity(torch.randn(1, cfg.latent_dim, 16), 0.5)
        for seconds in sorted(lengths):
            frames = math.ceil(seconds * frame_rate)
            x = torch.randn(1, cfg.latent_dim, frames)
            gc.collect()
            libc.malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            before = _proc_status_kib("VmRSS")
            walls, cpus = [], []
            for i in range(repeats):
                w0, c0 = time.perf_counter(), time.process_time()
                velocity(x, (i + 1) / (repeats + 1))
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
            peak = _proc_status_kib("VmHWM")
            rows.append(
                {
                    "model": model,
                    "backbone": backbone,
                    "seconds": seconds,
                    "frames": frames,
                    "parameters": sum(p.numel() for p in net.parameters()),
                    "evaluations_timed": repeats,
                    "eval_wall_s": round(statistics.median(walls), 4),
                    "eval_cpu_s": round(statistics.median(cpus), 4),
                    "working_mib": round((peak - before) / 1024, 1),
                    "peak_rss_mib": round(peak / 1024, 1),
                }
            )
    return rows


def growth_exponent(xs: list[float], ys: list[float]) -> float | None:
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if y > 0]
    if len(pts) < 2:
        return None
    return round(float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0]), 2)


def run_cli(model_dir: str, seconds: float, steps: int, method: str) -> dict:
    """Render one clip with the single-prompt CLI; wall seconds and the process's peak RSS (wait4)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "long.wav"
        cmd = [
            sys.executable,
            "-m",
            "pipelines.generate",
            "upbeat electronic track with synth and drums",
            "--seconds",
            str(seconds),
            "--steps",
            str(steps),
            "--method",
            method,
            "--model-dir",
            model_dir,
            "--device",
            "cpu",
            "-o",
            str(out),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        printed = proc.stdout.read().strip() if proc.stdout else ""
        if status != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed with status {status}")
        import soundfile as sf

        info = sf.info(str(out))
    return {
        "command": " ".join(cmd[1:]),
        "seconds_of_audio": info.frames / info.samplerate,
        "sample_rate": info.samplerate,
        "channels": info.channels,
        "steps": steps,
        "method": method,
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "cli_printed": printed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "BACKBONE", "REPEATS"), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", default=str(ROOT / "models/final"))
    parser.add_argument("--skip-cli", action="store_true", help="skip the 3-minute CLI clip")
    parser.add_argument("--lengths", nargs="+", type=float, default=list(LENGTHS))
    args = parser.parse_args()
    if args.one:
        model, backbone, repeats = args.one
        print(json.dumps(measure_lengths(model, backbone, args.lengths, int(repeats))))
        return
    from pipelines.common.params import load_params

    gen = load_params(str(ROOT / "params.yaml")).generate
    steps, method = gen.steps, gen.method
    nfe = steps * (1 if method in ("euler", "ab2") else 2)
    rows = []
    for model, repeats in (("embedded", 3), ("paper", 1)):
        for backbone in ("bimamba", "attention"):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                model,
                backbone,
                str(repeats),
                "--lengths",
                *map(str, args.lengths),
            ]
            res = subprocess.run(
                cmd,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
                check=True,
            )
            for row in json.loads(res.stdout.strip().splitlines()[-1]):
                seconds = row["seconds"]
                row["s_per_generated_s_wall"] = round(row["eval_wall_s"] * nfe / seconds, 4)
                row["s_per_generated_s_cpu"] = round(row["eval_cpu_s"] * nfe / seconds, 4)
                rows.append(row)
                print(
                    f"{model:<9} {backbone:<9} {seconds:>6.0f} s  T={row['frames']:>5}  "
                    f"eval {row['eval_cpu_s']:>8.3f} CPU s  working {row['working_mib']:>8.1f} MiB",
                    flush=True,
                )
    fits = []
    for model in ("embedded", "paper"):
        for backbone in ("bimamba", "attention"):
            mine = [r for r in rows if r["model"] == model and r["backbone"] == backbone]
            xs = [r["seconds"] for r in mine]
            fits.append(
                {
                    "model": model,
                    "backbone": backbone,
                    "time_exponent_cpu": growth_exponent(xs, [r["eval_cpu_s"] for r in mine]),
                    "memory_exponent": growth_exponent(xs, [r["working_mib"] for r in mine]),
                }
            )
    result = {
        "what": "long-form cost per guided network evaluation (CFG batch 2), random weights, one thread",
        "nfe_for_per_second_figures": nfe,
        "generate_steps": steps,
        "generate_method": method,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "rows": rows,
        "growth_fits": fits,
    }
    if not args.skip_cli and not (Path(args.model_dir) / "model.safetensors").is_file():
        print(
            f"no trained model in {args.model_dir} (run `make repro` first): skipping the 3-minute CLI clip"
        )
    elif not args.skip_cli:
        result["cli_3min"] = run_cli(args.model_dir, 180.0, steps, method)
        print(f"CLI 3-minute clip: {result['cli_3min']}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for f in fits:
        print(
            f"{f['model']:<9} {f['backbone']:<9} time ~ L^{f['time_exponent_cpu']}  memory ~ L^{f['memory_exponent']}"
        )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
