"""`make gpu-check`: one command that says whether this GPU machine runs the paper recipe, and how fast.

Runs with a bare GPU machine's own Python (a CUDA build of torch, which ships Triton), none of the project's
environment: it imports torch, the standard library and flowjam's torch-only modules; the pytest section needs
the pure-Python wheels listed in docs/gpu.md, and the dcae/demucs sections the project's environment (they are
skipped, with the reason, where it is missing). Sections (each timed; one failing does not stop the others; the
exit status is 1 if any failed; sections still waiting when ``--budget-s`` is spent are skipped):

  backends    each scan backend's probe on this device, and what ``auto`` picks
  parity      Triton (and mamba_ssm's kernel and fused path where they run) vs the torch scan, forward and
              backward, fp32 and bf16, at the paper mixer's size
  train       paper-size (24 x 512) training steps/s and peak memory at batch 16 x 323 frames, bf16 autocast,
              with every scan path that runs here
  max_batch   the largest batch that trains at 323 frames, against model.training.batch_plan's estimate
  generate    one 10 s clip as the generate stage samples it: the paper profile's setting (Euler 100, CFG 3.5,
              bf16) and the params defaults (ab2 4, CFG 1.5, fp32 with TF32), each after a warm-up
  pytest      the kernel tests (Triton compiled for this GPU; mamba_ssm's where it imports), at most 240 s
  dcae        ACE-Step DCAE encode throughput (x real time), random weights of its config
  demucs      htdemucs separation throughput (x real time), random weights
  ddp         a 2-process DDP training step (NCCL) when two GPUs are present: replicas must agree

``--dry-run`` runs every section on CPU with tiny sizes and Triton in its interpreter (pytest only collects the
tests; DDP runs 2 processes on gloo; max_batch searches against a fake capacity), so the test suite exercises it.

Run: python bench/gpu_check.py [--dry-run] -> prints a table, writes bench/results/gpu.json
"""

from __future__ import annotations

import os
import sys

if "--dry-run" in sys.argv:  # Triton reads it when imported: before anything imports triton
    os.environ.setdefault("TRITON_INTERPRET", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check_audio import check_dcae, check_demucs  # noqa: E402
from gpu_check_scan import check_backends, check_parity, check_pytest  # noqa: E402
from gpu_check_setup import sizes_for, versions  # noqa: E402
from gpu_check_train import check_ddp, check_generate, check_max_batch, check_train  # noqa: E402

DEFAULT_BUDGET_S = 450.0  # under 8 minutes with the last section's own time

# the measurements first: if the budget runs out, the kernel tests (slow to compile everything) go first
CHECKS: dict[str, Callable[..., dict[str, Any]]] = {
    "backends": check_backends,
    "parity": check_parity,
    "train": check_train,
    "max_batch": check_max_batch,
    "generate": check_generate,
    "pytest": check_pytest,
    "dcae": check_dcae,
    "demucs": check_demucs,
    "ddp": check_ddp,
}


def _train_headline(result: dict[str, Any]) -> str:
    parts = []
    for name, r in result.items():
        if isinstance(r, dict):
            peak = "" if r["peak_gib"] is None else f", {r['peak_gib']:.1f} GiB"
            parts.append(f"{name} {r['steps_per_s']:.2f} steps/s{peak}")
    return "; ".join(parts) + f"; x{result['speedup_over_torch']:.2f} over torch"


def _headline(name: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return "FAILED: " + result["error"].splitlines()[0][:90]
    if "skipped" in result:
        return "skipped: " + result["skipped"][:100]
    if name == "pytest":
        return result["summary"]
    if name == "backends":
        return f"auto -> {result['auto']['backend']} ({result['auto']['reason'][:80]})"
    if name == "parity":
        return ", ".join(
            f"{kernel} {dtype} {r['max_rel_error']:.1e}"
            for kernel, per in result.items()
            if isinstance(per, dict)
            for dtype, r in per.items()
        )
    if name == "train":
        return _train_headline(result)
    if name == "max_batch":
        plan = result.get("plan")
        planned = f" (plan: {plan['batch_size']} x {plan['accum_steps']})" if plan else ""
        return f"{result['largest_fitting_batch']} x {result['frames']} frames with {result['scan']}{planned}"
    if name == "generate":
        return ", ".join(
            f"{k} ({r['method']} {r['steps']}, {r['precision']}) {r['seconds']:.2f} s"
            for k, r in result.items()
            if isinstance(r, dict)
        )
    if name in ("dcae", "demucs"):
        return f"{result['x_real_time']:.1f}x real time ({result.get('config', result.get('model'))})"
    if name == "ddp":
        return f"{result['backend']} x{result['world_size']}: {result['step_s']:.3f} s/step, replicas agree"
    return json.dumps(result)[:100]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (what the test suite runs)")
    parser.add_argument("--only", nargs="+", choices=list(CHECKS), help="run these sections only")
    parser.add_argument(
        "--budget-s", type=float, default=DEFAULT_BUDGET_S, help="skip sections started later"
    )
    parser.add_argument(
        "--acestep-dir",
        default=os.environ.get("ACESTEP_DIR") or None,
        help="ACE-Step snapshot (codec.acestep_dir) whose DCAE config.json to use",
    )
    parser.add_argument("--separate-weights-dir", default=None, help="separate.weights_dir holding htdemucs")
    parser.add_argument("--out", default="bench/results/gpu.json")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; use --dry-run to exercise the script on CPU", file=sys.stderr)
        return 2
    device = torch.device("cpu") if args.dry_run else torch.device("cuda", 0)
    sizes = sizes_for(args.dry_run)
    facts = versions(device)
    report: dict[str, Any] = {
        "dry_run": args.dry_run,
        **{k: facts[k] for k in ("device", "torch", "cuda", "triton")},
        "versions": facts,
        "checks": {},
    }
    print(
        f"{'machine':>9}          {facts['device']}, torch {facts['torch']}, CUDA {facts['cuda']}, "
        f"Triton {facts['triton']}, mamba_ssm {facts['mamba_ssm']}",
        flush=True,
    )
    started = time.perf_counter()
    for name in args.only or list(CHECKS):
        start = time.perf_counter()
        if start - started > args.budget_s:
            result: dict[str, Any] = {"skipped": f"time budget of {args.budget_s:.0f} s spent"}
        else:
            try:
                result = CHECKS[name](
                    dry_run=args.dry_run,
                    device=device,
                    sizes=sizes,
                    acestep_dir=args.acestep_dir,
                    separate_weights_dir=args.separate_weights_dir,
                )
            except Exception as error:  # one broken section must not hide the others
                result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        result["seconds"] = time.perf_counter() - start
        report["checks"][name] = result
        print(f"{name:>9} {result['seconds']:7.1f} s  {_headline(name, result)}", flush=True)
    report["seconds"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    failed = [n for n, r in report["checks"].items() if "error" in r]
    print(
        f"{'total':>9} {report['seconds']:7.1f} s  {'FAILED: ' + ', '.join(failed) if failed else 'all passed'}"
        f" -> {out}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
