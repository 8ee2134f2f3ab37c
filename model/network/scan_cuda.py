"""The CUDA selective-scan backend: mamba_ssm's fused kernel, imported lazily and only here, and probed.

mamba_ssm is the optional ``cuda`` extra (``pip install -e '.[cuda]'`` on a machine with CUDA and nvcc). Nothing
else in the package imports it, and CPU users never pay for it. Importing is not enough to know that the kernel
runs: newer mamba_ssm releases import without a built ``selective_scan_cuda`` extension (and fail on the first
call), and a wheel built for another GPU architecture fails only at launch. So ``probe_cuda_scan(device)`` makes
one tiny real forward and backward call on the device, compares it with the torch scan, and caches the verdict
for the process.

The kernel's contract (``csrc/selective_scan/selective_scan.cpp`` of mamba_ssm 2.3.2.post1, after the Python
wrapper makes B/C 4-D and the last dimension contiguous): u in fp32/fp16/bf16; delta, variable B/C, z and the
incoming gradient in u's dtype; A, D and delta_bias fp32; last-dimension stride 1; d_state <= 256; the output
in u's dtype. ``selective_scan_cuda`` delivers exactly that: it casts delta, B, C, z to u's dtype and A, D,
delta_bias to fp32, so a caller's mixed dtypes (bf16 autocast) cannot reach the kernel's checks.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch

from model.network.scan import selective_scan

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "install the `cuda` extra on a machine with a CUDA toolkit (`pip install -e '.[cuda]'`, which builds "
    "mamba-ssm and causal-conv1d from source, so that mamba_ssm's selective_scan_cuda extension is compiled "
    "for this GPU), or set model.scan_backend to `torch` or `auto`"
)
PROBE_TOLERANCE = 1e-3  # fp32 kernel vs fp32 torch scan on a (1, 4, 8) problem; they agree to ~1e-6
_probe_results: dict[str, tuple[bool, str]] = {}


class CudaScanUnavailableError(ImportError):
    """scan_backend 'cuda' was requested but mamba_ssm's kernel cannot run here."""


@functools.cache
def _import_selective_scan_fn() -> tuple[Callable[..., torch.Tensor] | None, str]:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as error:  # ImportError, or an OSError/RuntimeError from a broken CUDA extension
        return None, f"{type(error).__name__}: {error}"
    return selective_scan_fn, ""


def cuda_scan_importable() -> bool:
    """Whether mamba_ssm's selective-scan interface imports in this process (cached after the first call)."""
    return _import_selective_scan_fn()[0] is not None


def require_cuda_scan() -> Callable[..., torch.Tensor]:
    """Return mamba_ssm's ``selective_scan_fn`` or raise CudaScanUnavailableError saying why and what to do."""
    scan_fn, reason = _import_selective_scan_fn()
    if scan_fn is None:
        raise CudaScanUnavailableError(
            f"scan_backend='cuda' needs mamba_ssm's CUDA kernels, but importing "
            f"mamba_ssm.ops.selective_scan_interface failed ({reason}); {INSTALL_HINT}"
        )
    return scan_fn


def _probe_call(kernel: Callable[..., torch.Tensor], device: torch.device) -> None:
    """One (1, 4, 8) scan with d_state 2, forward and backward, checked against the torch scan; raises if off."""
    gen = torch.Generator().manual_seed(0)
    shapes = {
        "u": (1, 4, 8),
        "delta": (1, 4, 8),
        "A": (4, 2),
        "B": (1, 2, 8),
        "C": (1, 2, 8),
        "D": (4,),
        "z": (1, 4, 8),
        "delta_bias": (4,),
    }
    inputs = {name: torch.randn(shape, generator=gen) for name, shape in shapes.items()}
    inputs["A"] = -inputs["A"].abs()
    results = []
    for fn, where in ((kernel, device), (selective_scan, torch.device("cpu"))):
        leaves = {k: v.to(where).requires_grad_() for k, v in inputs.items()}
        out = fn(
            leaves["u"],
            leaves["delta"],
            leaves["A"],
            leaves["B"],
            leaves["C"],
            leaves["D"],
            z=leaves["z"],
            delta_bias=leaves["delta_bias"],
            delta_softplus=True,
        )
        out.square().sum().backward()
        results.append([out.detach().cpu()] + [leaves[k].grad.cpu() for k in ("u", "delta", "A", "B")])
    for got, want in zip(*results, strict=True):
        if got.shape != want.shape or not torch.isfinite(got).all():
            raise RuntimeError(f"the kernel returned shape {tuple(got.shape)} or non-finite values")
        error = float((got - want).abs().max())
        if error > PROBE_TOLERANCE * (1.0 + float(want.abs().max())):
            raise RuntimeError(f"the kernel disagrees with the torch scan by {error:.3g}")


def probe_cuda_scan(device: torch.device | str) -> tuple[bool, str]:
    """(usable, reason): whether mamba_ssm's kernel imports AND a tiny real call on ``device`` succeeds.

    Runs once per device per process (the verdict is cached and logged once); never raises.
    """
    key = str(torch.device(device))
    if key in _probe_results:
        return _probe_results[key]
    kernel, reason = _import_selective_scan_fn()
    if kernel is None:
        result = (False, f"mamba_ssm does not import ({reason})")
    else:
        try:
            _probe_call(kernel, torch.device(device))
            result = (True, f"a test call of mamba_ssm's selective scan on {key} matched the torch scan")
        except Exception as error:  # a missing extension, no kernel image for this GPU, a wrong result
            result = (
                False,
                f"a test call of mamba_ssm's selective scan on {key} failed "
                f"({type(error).__name__}: {error})",
            )
    _probe_results[key] = result
    logger.info("CUDA selective scan on %s: %s (%s)", key, "usable" if result[0] else "NOT usable", result[1])
    return result


def require_cuda_scan_on(device: torch.device | str) -> None:
    """Raise CudaScanUnavailableError (why, and what to install) unless the kernel runs on ``device``."""
    usable, reason = probe_cuda_scan(device)
    if not usable:
        raise CudaScanUnavailableError(
            f"scan_backend='cuda' cannot run on {device}: {reason}; {INSTALL_HINT}"
        )


def selective_scan_cuda(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """mamba_ssm's fused selective scan; same arguments and shapes as ``model.network.scan.selective_scan``.

    u, delta, z: (B, D, L); A: (D, N); B, C: (B, N, L); D, delta_bias: (D,). Inputs are brought to the
    kernel's contract (module docstring): the scan runs in u's dtype, with fp32 weights; returns (B, D, L) in
    u's dtype. The device is the caller's business (the mixer checks it; the kernel refuses non-CUDA tensors).
    """
    scan_fn = require_cuda_scan()
    dtype = u.dtype
    return scan_fn(
        u.contiguous(),
        delta.to(dtype).contiguous(),
        A.float().contiguous(),
        B.to(dtype).contiguous(),
        C.to(dtype).contiguous(),
        None if D is None else D.float(),
        z=None if z is None else z.to(dtype).contiguous(),
        delta_bias=None if delta_bias is None else delta_bias.float(),
        delta_softplus=delta_softplus,
    )
