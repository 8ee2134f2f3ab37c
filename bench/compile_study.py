"""Is ``torch.compile`` worth it for the embedded default's training step on CPU? Compile time and steady-state
CPU time per step of the real step (flow loss, backward, clip, AdamW) for these variants, each in a fresh process
with an empty inductor cache (as in a clean clone):

- ``eager``: no compile (what the stage runs);
- ``mlp_attn``: each block's MLP and cross-attention modules compiled (regions without the custom scan);
- ``blocks``: each block's forward compiled with its BiMamba mixer left eager (``torch.compiler.disable``):
  norms, adaLN modulation, gates, residuals, cross-attention and MLP fused around the mixer;
- ``mixers``: the above plus each Mamba mixer's projections/conv compiled with the scan itself left eager;
- ``whole``: ``torch.compile`` of the whole network (graph breaks where it cannot trace).

    PYTHONPATH=. .venv/bin/python bench/compile_study.py --steps 60 --rounds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

VARIANTS = ("eager", "mlp_attn", "blocks", "mixers", "whole")
TEXT_TOKENS = 14  # about the embedded captions' MiniLM token count


def build(variant: str, params_path: str):
    from model.flow.objective import FlowMatching
    from model.network import mamba as mamba_module
    from model.network.backbone import VelocityNet, VelocityNetConfig
    from model.training.config import TrainConfig
    from model.training.optimizer import build_optimizer
    from pipelines.common.params import config_of, load_params

    params = load_params(params_path)
    cfg = config_of(VelocityNetConfig, params.model, latent_dim=params.codec.mel.n_mels, text_dim=384)
    cfg = dataclasses.replace(cfg, scan_backend="torch")
    train = config_of(TrainConfig, params.train)
    torch.manual_seed(0)
    net = VelocityNet(cfg)
    if variant == "mlp_attn":
        for block in net.blocks:
            block.mlp.compile()
            block.cross_attn.compile()
    elif variant in ("blocks", "mixers"):
        for block in net.blocks:
            block.mixer.forward = torch.compiler.disable(block.mixer.forward)
            if variant == "mixers":
                for mixer in (block.mixer.mamba_fwd, block.mixer.mamba_rev):
                    mixer.compile()
            block.compile()
        if variant == "mixers":
            mamba_module.selective_scan_time_major = torch.compiler.disable(
                mamba_module.selective_scan_time_major
            )
    elif variant == "whole":
        net.compile()
    null = torch.randn(1, 3, 384), torch.ones(1, 3, dtype=torch.bool)
    flow = FlowMatching(net, train.flow, *null)
    optimizer = build_optimizer(net, train.lr, train.weight_decay)
    return net, flow, optimizer, train


def run_one(variant: str, steps: int, params_path: str, threads: int) -> dict:
    torch.set_num_threads(threads)
    net, flow, optimizer, train = build(variant, params_path)
    g = torch.Generator().manual_seed(0)
    batch, frames = train.batch_size, train.frames
    x = torch.randn(batch, net.cfg.latent_dim, frames, generator=g)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[0, frames // 2 :] = False
    text = torch.randn(batch, TEXT_TOKENS, 384, generator=g)
    text_mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.bool)
    text_mask[1, TEXT_TOKENS // 2 :] = False

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss, _ = flow(x, mask, text, text_mask, g)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), train.grad_clip)
        optimizer.step()
        return float(loss.detach())

    wall, cpu = time.perf_counter(), time.process_time()
    step()  # the first step compiles (forward and backward graphs)
    step()  # recompiles, if any, happen here (e.g. a second dropout pattern)
    first_wall, first_cpu = time.perf_counter() - wall, time.process_time() - cpu
    walls, cpus = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {
        "variant": variant,
        "threads": threads,
        "compile_wall_s": first_wall,
        "compile_cpu_s": first_cpu,
        "step_wall_ms_median": 1e3 * statistics.median(walls),
        "step_cpu_ms_median": 1e3 * statistics.median(cpus),
        "step_cpu_ms_min": 1e3 * min(cpus),
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.steps, args.params, args.threads)))
        return
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    for round_index in range(args.rounds):
        order = args.variants if round_index % 2 == 0 else args.variants[::-1]
        for variant in order:
            with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
                env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": cache}
                cmd = [sys.executable, __file__, "--one", variant, "--steps", str(args.steps)]
                cmd += ["--params", args.params, "--threads", str(args.threads)]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
            run = json.loads(out.strip().splitlines()[-1])
            # the whole process tree (inductor compiles in worker processes and runs the C++ compiler)
            run["process_tree_cpu_s"] = (after.ru_utime + after.ru_stime) - (
                before.ru_utime + before.ru_stime
            )
            runs[variant].append(run)
            print(
                f"round {round_index} {variant}: first two steps {run['compile_wall_s']:.1f} s wall / "
                f"{run['compile_cpu_s']:.1f} s cpu, step {run['step_cpu_ms_median']:.1f} ms cpu median, "
                f"load {run['load_average'][0]:.1f}",
                flush=True,
            )
    print(
        f"{'variant':<10} {'first 2 steps s (cpu)':>22} {'step cpu ms':>12} {'vs eager':>9} {'step wall ms':>13}"
    )
    eager = (
        statistics.median(r["step_cpu_ms_median"] for r in runs.get("eager", [])) if "eager" in runs else None
    )
    summary = {}
    for variant, rs in runs.items():
        cpu = statistics.median(r["step_cpu_ms_median"] for r in rs)
        summary[variant] = {
            "first_two_steps_cpu_s": statistics.median(r["compile_cpu_s"] for r in rs),
            "first_two_steps_wall_s": statistics.median(r["compile_wall_s"] for r in rs),
            "process_tree_cpu_s": statistics.median(r["process_tree_cpu_s"] for r in rs),
            "step_cpu_ms": cpu,
            "step_wall_ms": statistics.median(r["step_wall_ms_median"] for r in rs),
        }
        ratio = f"{eager / cpu:9.2f}" if eager else ""
        print(
            f"{variant:<10} {summary[variant]['first_two_steps_wall_s']:22.1f} "
            f"{summary[variant]['process_tree_cpu_s']:11.1f} {cpu:12.1f} {ratio} "
            f"{summary[variant]['step_wall_ms']:13.1f}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
