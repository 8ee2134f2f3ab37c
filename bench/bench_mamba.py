"""Benchmark: the torch selective scan and a full BiMamba layer next to a same-width attention block.

    .venv/bin/python bench/bench_mamba.py [--lengths 108 323 1024 4096] [--threads 1]

Batch 4, d_model 512 (d_inner 1024, d_state 16), fp32 on CPU. Each (component, T) runs in a fresh
subprocess, so its peak resident memory (VmHWM from /proc/self/status, reset after the warm-up through
/proc/self/clear_refs) belongs to that configuration alone; it includes the interpreter and torch
(``baseline_rss_bytes``). A run is one training step: the forward (recording autograd) is timed, then the
backward. Wall time and process CPU time are both recorded (the machine may be shared). Writes
bench/results/mamba.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "mamba.json"
BATCH, D_MODEL, D_STATE, EXPAND, HEADS = 4, 512, 16, 2, 8
COMPONENTS = ("scan-chunked", "scan-loop", "bimamba", "attention")
LOOP_MAX_LENGTH = 323  # the autograd loop is slower and keeps every step's state: compare at short T only
TARGET_FWD_BWD_S_AT_323 = 1.5
TARGET_PEAK_GB_AT_4096 = 4.0


def _peak_rss_bytes() -> int:
    """Peak resident set size of this process since the last reset (VmHWM), falling back to ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def _build(component: str, length: int):
    """Return (forward() -> scalar loss, parameter count) for one configuration."""
    import torch
    import torch.nn.functional as F

    from model.network.bimamba import BiMamba
    from model.network.scan import selective_scan

    torch.manual_seed(0)
    if component.startswith("scan-"):
        method = component.removeprefix("scan-")
        d_inner = EXPAND * D_MODEL
        tensors = {
            "u": torch.randn(BATCH, d_inner, length),
            "delta": torch.randn(BATCH, d_inner, length) * 0.5,
            "B": torch.randn(BATCH, D_STATE, length),
            "C": torch.randn(BATCH, D_STATE, length),
            "z": torch.randn(BATCH, d_inner, length),
        }
        for value in tensors.values():
            value.requires_grad_()
        A = (-torch.arange(1, D_STATE + 1, dtype=torch.float32).repeat(d_inner, 1)).requires_grad_()
        D = torch.ones(d_inner, requires_grad=True)
        bias = torch.zeros(d_inner, requires_grad=True)

        def forward() -> torch.Tensor:
            out = selective_scan(**tensors, A=A, D=D, delta_bias=bias, delta_softplus=True, method=method)
            return out.square().mean()

        return forward, 0
    if component == "bimamba":
        module = BiMamba(D_MODEL, d_state=D_STATE, expand=EXPAND, scan_backend="torch")
        x = torch.randn(BATCH, length, D_MODEL, requires_grad=True)
        mask = torch.ones(BATCH, length, dtype=torch.bool)
        mask[1:, length - length // 4 :] = False  # a realistic padded batch exercises the length-aware path

        def forward() -> torch.Tensor:
            return module(x, mask).square().mean()

        return forward, sum(p.numel() for p in module.parameters())
    if component == "attention":
        qkv = torch.nn.Linear(D_MODEL, 3 * D_MODEL)
        proj = torch.nn.Linear(D_MODEL, D_MODEL)
        x = torch.randn(BATCH, length, D_MODEL, requires_grad=True)

        def forward() -> torch.Tensor:
            q, k, v = qkv(x).view(BATCH, length, 3, HEADS, D_MODEL // HEADS).permute(2, 0, 3, 1, 4)
            attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(BATCH, length, D_MODEL)
            return proj(attended).square().mean()

        return forward, sum(p.numel() for p in [*qkv.parameters(), *proj.parameters()])
    raise ValueError(f"unknown component {component!r}; choose from {COMPONENTS}")


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def worker(component: str, length: int, threads: int) -> dict:
    """Measure one configuration in this (fresh) process.

    Each run is one training step of the component: the forward (recording autograd) is timed on its own,
    then the backward; ``fwd`` is the forward alone, ``fwd_bwd`` both. Peak RSS is read after each.
    """
    import torch

    torch.set_num_threads(threads)
    forward, n_params = _build(component, length)
    repeats, warmup = (3, 1) if length <= 323 else (1, 0)
    baseline = _peak_rss_bytes()  # interpreter + torch + this configuration's weights and inputs
    for _ in range(warmup):
        forward().backward()
    resettable = _reset_peak_rss()
    samples: dict[str, list[float]] = {"fwd": [], "fwd_cpu": [], "fwd_bwd": [], "fwd_bwd_cpu": []}
    peak_fwd = peak_fwd_bwd = 0
    for _ in range(repeats):
        wall0, cpu0 = _clock()
        loss = forward()
        wall1, cpu1 = _clock()
        peak_fwd = max(peak_fwd, _peak_rss_bytes())
        loss.backward()
        wall2, cpu2 = _clock()
        peak_fwd_bwd = max(peak_fwd_bwd, _peak_rss_bytes())
        samples["fwd"].append(wall1 - wall0)
        samples["fwd_cpu"].append(cpu1 - cpu0)
        samples["fwd_bwd"].append(wall2 - wall0)
        samples["fwd_bwd_cpu"].append(cpu2 - cpu0)
        del loss
    result = {"component": component, "T": length, "params": n_params, "baseline_rss_bytes": baseline}
    for mode, peak in (("fwd", peak_fwd), ("fwd_bwd", peak_fwd_bwd)):
        result[mode] = {
            "median_s": statistics.median(samples[mode]),
            "runs_s": samples[mode],
            "median_cpu_s": statistics.median(samples[f"{mode}_cpu"]),
            "peak_rss_bytes": peak,
        }
    result["peak_rss_reset_after_setup"] = resettable
    return result


def _run_subprocess(component: str, length: int, threads: int) -> dict:
    command = [sys.executable, __file__, "--worker", component, str(length), "--threads", str(threads)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"component": component, "T": length, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load_average() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[108, 323, 1024, 4096])
    parser.add_argument("--components", nargs="+", default=list(COMPONENTS), choices=COMPONENTS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--worker", nargs=2, metavar=("COMPONENT", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.threads)))
        return

    load_before = _load_average()
    results = []
    print(
        f"{'component':<13}{'T':>6}{'fwd s':>9}{'fwd+bwd s':>11}{'f+b cpu s':>11}"
        f"{'peak fwd GB':>13}{'peak f+b GB':>13}"
    )
    for length in args.lengths:
        for component in args.components:
            if component == "scan-loop" and length > LOOP_MAX_LENGTH:
                continue
            row = _run_subprocess(component, length, args.threads)
            results.append(row)
            if "error" in row:
                print(f"{component:<13}{length:>6}  failed: {row['error']}")
                continue
            print(
                f"{component:<13}{length:>6}{row['fwd']['median_s']:>9.3f}{row['fwd_bwd']['median_s']:>11.3f}"
                f"{row['fwd_bwd']['median_cpu_s']:>11.3f}{row['fwd']['peak_rss_bytes'] / 1e9:>13.2f}{row['fwd_bwd']['peak_rss_bytes'] / 1e9:>13.2f}",
                flush=True,
            )

    def find(component: str, length: int) -> dict | None:
        return next(
            (r for r in results if r["component"] == component and r["T"] == length and "fwd" in r), None
        )

    at_323, at_4096 = find("bimamba", 323), find("bimamba", 4096)
    targets = {
        "bimamba_fwd_bwd_s_at_323": at_323["fwd_bwd"]["median_s"] if at_323 else None,
        "bimamba_fwd_bwd_cpu_s_at_323": at_323["fwd_bwd"]["median_cpu_s"] if at_323 else None,
        "bimamba_fwd_bwd_s_at_323_target": TARGET_FWD_BWD_S_AT_323,
        "bimamba_peak_rss_gb_at_4096": at_4096["fwd_bwd"]["peak_rss_bytes"] / 1e9 if at_4096 else None,
        "bimamba_peak_rss_gb_at_4096_target": TARGET_PEAK_GB_AT_4096,
    }
    report = {
        "settings": {
            "batch": BATCH,
            "d_model": D_MODEL,
            "d_state": D_STATE,
            "expand": EXPAND,
            "heads": HEADS,
        },
        "dtype": "float32",
        "device": "cpu",
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "note": (
            "shared machine: wall timings are noisy (see the load averages); median_cpu_s is this process's "
            "CPU time; peak RSS (VmHWM) includes the Python + torch baseline (baseline_rss_bytes)"
        ),
        "targets": targets,
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"targets: {json.dumps(targets)}")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    failed = [f"{r['component']} T={r['T']}" for r in results if "error" in r]
    if failed:
        sys.exit(
            f"bench_mamba: {len(failed)} configuration(s) failed: {', '.join(failed)} (see {RESULTS.name})"
        )


if __name__ == "__main__":
    main()
