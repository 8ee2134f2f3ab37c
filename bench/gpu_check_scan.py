"""The scan sections of ``bench/gpu_check.py``: the kernel tests (pytest), which backend ``auto`` picks and why, and
each available kernel against the torch scan, forward and backward, fp32 and bf16.

Imports torch and flowjam's ``model.network`` only (pytest in a subprocess, when installed).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.network import scan_cuda, scan_fused, scan_triton  # noqa: E402
from model.network.mamba import Mamba  # noqa: E402
from model.network.scan import selective_scan  # noqa: E402

# the pure-Python wheels the pytest section needs (docs/gpu.md: the `pip download` line)
PYTEST_WHEELS = ("pytest", "pluggy", "iniconfig", "packaging", "pygments")
KERNEL_TESTS = ("tests/model/network/test_scan_triton.py", "tests/model/network/test_scan.py")
# need the project's environment (mambapy, safetensors, pydantic): run where they import
VENV_KERNEL_TESTS = {
    "tests/model/network/test_mamba.py": ("mambapy",),
    "tests/model/network/test_mamba_fused.py": ("mambapy", "safetensors", "pydantic"),
}
PYTEST_TIMEOUT_S = 240
TOLERANCES = {torch.float32: 1e-3, torch.bfloat16: 5e-2}  # relative to each tensor's largest magnitude


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_pytest(dry_run: bool, **_: Any) -> dict[str, Any]:
    """The kernel tests (compiled Triton and mamba_ssm on a GPU); the dry run only collects them (running the
    suite inside the suite would recurse)."""
    if not _importable("pytest"):
        return {"skipped": f"pytest is not installed (pip install {' '.join(PYTEST_WHEELS)}: docs/gpu.md)"}
    files = list(KERNEL_TESTS) + [
        f for f, needs in VENV_KERNEL_TESTS.items() if all(_importable(m) for m in needs)
    ]
    # the interpreter's own flags too (e.g. -S: a test of this script runs it without site-packages)
    flags = subprocess._args_from_interpreter_flags()
    cmd = [sys.executable, *flags, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    cmd += ["--collect-only"] if dry_run else []
    # only pytest's own plugins: a machine's stray plugins (or the venv's pytest-timeout) are not needed here
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": path}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PYTEST_TIMEOUT_S, cwd=ROOT, env=env)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode not in (0, 5):  # 5: nothing selected
        tail = lines[-8:] + done.stderr.strip().splitlines()[-4:]
        raise RuntimeError(f"pytest failed (rc {done.returncode}): {' | '.join(tail)}")
    return {"rc": done.returncode, "files": files, "summary": lines[-1] if lines else ""}


def check_backends(device: torch.device, **_: Any) -> dict[str, Any]:
    """Each backend's probe on this device, and what ``auto`` (training's and generation's default) picks."""
    cuda_ok, cuda_reason = scan_cuda.probe_cuda_scan(device)
    triton_ok, triton_reason = scan_triton.probe_triton_scan(device)
    fused_problem = scan_fused.fused_problem(4, device) if cuda_ok else "mamba_ssm's kernel is not usable"
    auto = Mamba(16, scan_backend="auto").to(device).resolve_scan(device)
    return {
        "auto": auto.as_dict(),
        "mamba_ssm": {"usable": cuda_ok, "reason": cuda_reason},
        "mamba_ssm_fused": {"usable": not fused_problem, "reason": fused_problem or "usable"},
        "triton": {"usable": triton_ok, "reason": triton_reason},
    }


def available_backends(device: torch.device) -> list[str]:
    """The scan paths that run here, fastest first: cuda-fused, cuda, triton, torch."""
    out = []
    if scan_cuda.probe_cuda_scan(device)[0]:
        out += ["cuda-fused"] if not scan_fused.fused_problem(4, device) else []
        out += ["cuda"]
    if device.type == "cuda" or scan_triton.interpreter_requested():
        out += ["triton"] if scan_triton.probe_triton_scan(device)[0] else []
    return out + ["torch"]


@contextlib.contextmanager
def scan_path(name: str):
    """Make mixers with ``model.scan_backend`` = the path's backend take that path (``cuda`` without fusion)."""
    if name != "cuda":
        yield name.removesuffix("-fused")
        return
    real = scan_fused.fused_problem
    scan_fused.fused_problem = lambda d_conv, device: "disabled by gpu_check (timing the unfused kernel)"
    try:
        yield "cuda"
    finally:
        scan_fused.fused_problem = real


def _relative_errors(got: list[torch.Tensor], want: list[torch.Tensor], names: list[str]) -> dict[str, float]:
    return {
        n: float((g.float() - w.float()).abs().max() / w.float().abs().max().clamp_min(1e-12))
        for n, g, w in zip(names, got, want, strict=True)
    }


def _scan_case(shape, device, dtype) -> list[torch.Tensor]:
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


def _scan_grads(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    leaves = [t.clone().requires_grad_() for t in inputs]
    u, delta, A, B, C, D, z, bias = leaves
    out = fn(u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True)
    out.float().square().mean().backward()
    return [out.detach().float()] + [t.grad.float() for t in leaves]


def _scan_parity(fn, sizes, device) -> dict[str, Any]:
    names = ["out", "du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias"]
    result = {}
    for dtype, tol in TOLERANCES.items():
        inputs = _scan_case(sizes.scan, device, dtype)
        errors = _relative_errors(_scan_grads(fn, inputs), _scan_grads(selective_scan, inputs), names)
        result[str(dtype).removeprefix("torch.")] = {"max_rel_error": max(errors.values()), "tolerance": tol}
        result[str(dtype).removeprefix("torch.")]["per_tensor"] = errors
    return result


def _fused_parity(sizes, device) -> dict[str, Any]:
    """mamba_inner_fn against the same computation unfused, at the mixer's size (d_model = d_inner / 2)."""
    fn = scan_fused._import_mamba_inner_fn()[0]
    batch, d_inner, length, d_state = sizes.scan
    rank = -(-d_inner // 32)
    gen = torch.Generator().manual_seed(0)
    shapes = {
        "xz": (batch, 2 * d_inner, length),
        "conv1d_weight": (d_inner, 1, 4),
        "conv1d_bias": (d_inner,),
        "x_proj_weight": (rank + 2 * d_state, d_inner),
        "delta_proj_weight": (d_inner, rank),
        "out_proj_weight": (d_inner // 2, d_inner),
        "A": (d_inner, d_state),
        "D": (d_inner,),
        "delta_bias": (d_inner,),
    }
    base = {k: (torch.randn(s, generator=gen) * 0.3).to(device) for k, s in shapes.items()}
    base["A"] = -base["A"].abs() - 0.5
    names = ["out", *shapes]
    result = {}
    for dtype, tol in TOLERANCES.items():
        runs = []
        for f in (fn, lambda *a, **k: scan_fused.inner_reference(*a[:8], a[10], k["delta_bias"])):
            leaves = {k: v.clone().requires_grad_() for k, v in base.items()}
            args = [leaves[k] for k in list(shapes)[:6]]
            args[0] = args[0].to(dtype)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                out = f(*args, None, leaves["A"], None, None, leaves["D"], delta_bias=leaves["delta_bias"])
            out.float().square().mean().backward()
            runs.append([out.detach()] + [leaves[k].grad for k in shapes])
        errors = _relative_errors(runs[0], runs[1], names)
        result[str(dtype).removeprefix("torch.")] = {"max_rel_error": max(errors.values()), "tolerance": tol}
    return result


def check_parity(device: torch.device, sizes: Any, **_: Any) -> dict[str, Any]:
    """Max error of each available kernel against the torch scan (relative to the reference's largest value)."""
    result: dict[str, Any] = {}
    if device.type == "cuda" or scan_triton.interpreter_requested():
        result["triton"] = _scan_parity(scan_triton.selective_scan_triton, sizes, device)
    if scan_cuda.probe_cuda_scan(device)[0]:
        result["mamba_ssm"] = _scan_parity(scan_cuda.selective_scan_cuda, sizes, device)
        if not scan_fused.fused_problem(4, device):
            result["mamba_ssm_fused"] = _fused_parity(sizes, device)
    bad = {
        f"{name}/{dtype}": r["max_rel_error"]
        for name, per_dtype in result.items()
        for dtype, r in per_dtype.items()
        if r["max_rel_error"] > r["tolerance"]
    }
    if bad:
        raise RuntimeError(f"scan parity outside tolerance: {json.dumps(bad)}")
    return result
