"""`make gpu-check`: one command that says whether this GPU machine runs the paper recipe, and how fast.

Sections (each timed; one failing does not stop the others; the exit status is 1 if any failed):

  pytest      ``pytest -m cuda`` (the CUDA kernel tests)
  parity      CUDA vs torch selective scan, forward and backward, fp32 and bf16 (paper mixer sizes)
  train       paper-size training steps/s and peak memory at batch 16 x 323 frames under bf16 autocast, with
              the CUDA scan and with the torch scan (the kernel's gain)
  generate    one 10 s clip (108 frames) at 100 and at 25 Euler steps with CFG, random paper-size weights
  dcae        ACE-Step DCAE encode throughput (x real time); the config of ``--acestep-dir`` (the codec snapshot,
              only config.json is read) with random weights, else a stand-in f8c8 config (labelled as such)
  demucs      htdemucs separation throughput (x real time): HTDemucs with its 4 stems and segment 7.8 s (the
              released model's shape; ``--separate-weights-dir`` loads the real model), random weights
  ddp         a 2-process DDP training step (NCCL) when two GPUs are present: replicas must agree

``--dry-run`` runs every section on CPU with tiny sizes (the parity check compares the chunked torch scan with
the loop one in place of the kernel; DDP runs 2 processes on gloo), so the script is exercised by the test suite.

Run: .venv/bin/python bench/gpu_check.py [--dry-run] -> prints a table, writes bench/results/gpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.flow.objective import PAPER_FLOW, FlowMatching  # noqa: E402
from model.flow.sampling import sample  # noqa: E402
from model.network import scan_cuda  # noqa: E402
from model.network.backbone import VelocityNet  # noqa: E402
from model.network.scan import selective_scan  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check_audio import check_dcae, check_demucs  # noqa: E402
from gpu_check_setup import Sizes, _null, _sync, _text, sizes_for  # noqa: E402


def check_pytest(dry_run: bool, **_: Any) -> dict[str, Any]:
    """``pytest -m cuda``; the dry run only collects the marked tests (running the suite inside it would recurse)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"]
    cmd += ["--collect-only", "tests/model/network/test_scan.py"] if dry_run else []
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode not in (0, 5):  # 5: nothing selected (no CUDA tests collected)
        raise RuntimeError(f"pytest -m cuda failed (rc {done.returncode}): {' | '.join(lines[-5:])}")
    return {"rc": done.returncode, "summary": lines[-1] if lines else ""}


def _scan_inputs(
    shape: tuple[int, int, int, int], device: torch.device, dtype: torch.dtype
) -> list[torch.Tensor]:
    batch, channels, length, d_state = shape
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(batch, channels, length, generator=gen)
    delta = torch.randn(batch, channels, length, generator=gen) * 0.5
    A = -(torch.rand(channels, d_state, generator=gen) + 0.5)
    B, C = (torch.randn(batch, d_state, length, generator=gen) for _ in range(2))
    D, bias = torch.randn(channels, generator=gen), torch.randn(channels, generator=gen) * 0.1
    z = torch.randn(batch, channels, length, generator=gen)
    low = (0, 1, 3, 4, 6)  # u, delta, B, C, z in the run's dtype; A, D, delta_bias stay fp32 (the contract)
    return [
        t.to(device, dtype if i in low else torch.float32)
        for i, t in enumerate([u, delta, A, B, C, D, z, bias])
    ]


def _scan_run(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    leaves = [t.clone().requires_grad_() for t in inputs]
    u, delta, A, B, C, D, z, bias = leaves
    out = fn(u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True)
    out.float().square().mean().backward()
    return [out.detach().float()] + [t.grad.float() for t in leaves]


def check_parity(dry_run: bool, device: torch.device, sizes: Sizes, **_: Any) -> dict[str, Any]:
    """Max error of the candidate scan against the torch scan, relative to the reference's max magnitude."""
    names = ["out", "du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias"]
    if dry_run:

        def candidate(*a, **k):
            return selective_scan(*a, method="loop", **k)
    else:
        scan_cuda.require_cuda_scan_on(device)
        candidate = scan_cuda.selective_scan_cuda
    result, worst = {}, 0.0
    for dtype, tol in ((torch.float32, 1e-3), (torch.bfloat16, 5e-2)):
        inputs = _scan_inputs(sizes.scan, device, dtype)
        got, want = _scan_run(candidate, inputs), _scan_run(selective_scan, inputs)
        errors = {
            n: float((g - w).abs().max() / w.abs().max().clamp_min(1e-12))
            for n, g, w in zip(names, got, want, strict=True)
        }
        result[str(dtype).removeprefix("torch.")] = {
            "max_rel_error": max(errors.values()),
            "tolerance": tol,
            "per_tensor": errors,
        }
        worst = max(worst, max(errors.values()) / tol)
    if worst > 1.0:
        raise RuntimeError(f"scan parity outside tolerance: {json.dumps(result)}")
    return result


def _train_rate(sizes: Sizes, device: torch.device, backend: str, autocast: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    cfg = dataclasses.replace(sizes.net, scan_backend=backend)
    net = VelocityNet(cfg).to(device)
    text, text_mask = _text(sizes.batch, cfg, device)
    flow = FlowMatching(net, PAPER_FLOW, *_null(text, text_mask)).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01)
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn(sizes.batch, cfg.latent_dim, sizes.frames, device=device)
    mask = torch.ones(sizes.batch, sizes.frames, dtype=torch.bool, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss, _ = flow(x, mask, text, text_mask, gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    step()  # warm-up: allocator, kernels, the scan probe
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(sizes.steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / sizes.steps
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {
        "steps_per_s": 1.0 / seconds,
        "peak_gib": None if peak is None else peak / 2**30,
        "batch": sizes.batch,
        "frames": sizes.frames,
        "bf16_autocast": autocast,
    }


def check_train(dry_run: bool, device: torch.device, sizes: Sizes, **_: Any) -> dict[str, Any]:
    # the dry run measures the torch scan under both names: there is no kernel on CPU
    result = {
        name: _train_rate(sizes, device, "torch" if dry_run else name, autocast=True)
        for name in ("cuda", "torch")
    }
    result["kernel_speedup"] = result["cuda"]["steps_per_s"] / result["torch"]["steps_per_s"]
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def check_generate(device: torch.device, sizes: Sizes, **_: Any) -> dict[str, Any]:
    torch.manual_seed(0)
    net = VelocityNet(sizes.net).to(device).eval()
    text, text_mask = _text(1, sizes.net, device)
    result = {}
    for steps in sizes.gen_steps:
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            z = sample(
                net,
                text,
                text_mask,
                text[:, :1],
                text_mask[:, :1],
                sizes.gen_frames,
                steps=steps,
                cfg_scale=3.5,
                method="euler",
                generator=torch.Generator().manual_seed(0),
            )
        _sync(device)
        if not torch.isfinite(z).all():
            raise RuntimeError(f"{steps}-step sample is not finite")
        result[f"{steps}_steps_s"] = time.perf_counter() - start
    result["frames"] = sizes.gen_frames
    return result


def _ddp_worker(rank: int, world: int, init_file: str, dry_run: bool, out_file: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    backend = "gloo" if dry_run else "nccl"
    torch.distributed.init_process_group(
        backend, init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    device = torch.device("cpu") if dry_run else torch.device("cuda", rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    sizes = sizes_for(dry_run)
    torch.manual_seed(0)
    net = VelocityNet(dataclasses.replace(sizes.net, scan_backend="torch" if dry_run else "auto")).to(device)
    text, text_mask = _text(sizes.batch, sizes.net, device)
    flow = FlowMatching(net, PAPER_FLOW, *_null(text, text_mask)).to(device).train()
    model = DistributedDataParallel(flow, device_ids=None if dry_run else [rank])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    gen = torch.Generator(device).manual_seed(rank)
    x = torch.randn(sizes.batch, sizes.net.latent_dim, sizes.frames, device=device, generator=gen)
    mask = torch.ones(sizes.batch, sizes.frames, dtype=torch.bool, device=device)
    times = []
    for _ in range(3):
        _sync(device)
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=not dry_run):
            loss, _ = model(x, mask, text, text_mask, gen)
        loss.backward()
        opt.step()
        _sync(device)
        times.append(time.perf_counter() - start)
    digest = torch.tensor(
        [sum(float(p.detach().double().abs().sum()) for p in net.parameters())], device=device
    )
    digests = [torch.zeros_like(digest) for _ in range(world)]
    torch.distributed.all_gather(digests, digest)
    if rank == 0:
        Path(out_file).write_text(
            json.dumps({"step_s": min(times[1:]), "digests": [float(d) for d in digests]})
        )
    torch.distributed.destroy_process_group()


def check_ddp(dry_run: bool, **_: Any) -> dict[str, Any]:
    gpus = torch.cuda.device_count()
    if not dry_run and gpus < 2:
        return {"skipped": f"{gpus} GPU(s) present; DDP needs 2"}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ddp.json")
        torch.multiprocessing.spawn(_ddp_worker, args=(2, os.path.join(tmp, "init"), dry_run, out), nprocs=2)
        result = json.loads(Path(out).read_text())
    if len(set(result["digests"])) != 1:
        raise RuntimeError(f"DDP replicas diverged after 3 steps: {result['digests']}")
    return {"world_size": 2, "backend": "gloo" if dry_run else "nccl", **result}


CHECKS: dict[str, Callable[..., dict[str, Any]]] = {
    "pytest": check_pytest,
    "parity": check_parity,
    "train": check_train,
    "generate": check_generate,
    "dcae": check_dcae,
    "demucs": check_demucs,
    "ddp": check_ddp,
}


def _headline(name: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return "FAILED: " + result["error"].splitlines()[0][:90]
    if "skipped" in result:
        return "skipped: " + result["skipped"]
    if name == "pytest":
        return result["summary"]
    if name == "parity":
        return ", ".join(
            f"{k} max rel err {v['max_rel_error']:.2e} (tol {v['tolerance']:.0e})"
            for k, v in result.items()
            if isinstance(v, dict)
        )
    if name == "train":

        def one(k: str) -> str:
            peak = result[k]["peak_gib"]
            return f"{k} {result[k]['steps_per_s']:.2f} steps/s" + (
                "" if peak is None else f", {peak:.1f} GiB"
            )

        return f"{one('cuda')}; {one('torch')}; kernel x{result['kernel_speedup']:.2f}"
    if name == "generate":
        return ", ".join(
            f"{k.removesuffix('_steps_s')} steps {v:.2f} s"
            for k, v in result.items()
            if k.endswith("_steps_s")
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
    report: dict[str, Any] = {
        "dry_run": args.dry_run,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": "cpu" if args.dry_run else torch.cuda.get_device_name(0),
        "gpus": torch.cuda.device_count(),
        "checks": {},
    }
    started = time.perf_counter()
    for name in args.only or list(CHECKS):
        start = time.perf_counter()
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
    out.write_text(json.dumps(report, indent=2))
    failed = [n for n, r in report["checks"].items() if "error" in r]
    print(
        f"{'total':>9} {report['seconds']:7.1f} s  {'FAILED: ' + ', '.join(failed) if failed else 'all passed'}"
        f" -> {out}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
