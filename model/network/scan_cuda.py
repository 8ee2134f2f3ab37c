"""The CUDA selective-scan backend: mamba_ssm's fused kernel, imported lazily and only here, and probed.

mamba_ssm is the optional ``cuda`` extra, built from source by ``make gpu-env`` (docs/gpu.md). Nothing else in
the package imports it, and CPU users never pay for it. Importing is not enough to know that the kernel runs:
newer mamba_ssm releases import without a built ``selective_scan_cuda`` extension (and fail on the first call),
and a build for another GPU architecture fails only at launch. So ``probe_cuda_scan(device)`` makes one tiny
real forward and backward call on the device (``model.network.scan_probe``: in its own grad and autocast
modes, so a probe from inside ``no_grad`` generation gives the same verdict), compares it with the torch scan,
and caches the verdict per device for the process.

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

from model.network.scan_probe import ProbeResult, cached_probe, check_scan_call

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "build the `cuda` extra on a machine with a CUDA toolkit (`make gpu-env`, i.e. `pip install wheel ninja` "
    "then `pip install --no-build-isolation -e '.[cuda]'`, which compiles mamba-ssm and causal-conv1d for "
    "this GPU: docs/gpu.md), or set model.scan_backend to `triton` (`pip install '.[gpu]'`, no compiler), "
    "`torch` or `auto`"
)
_probe_results: dict[str, ProbeResult] = {}


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


def probe_cuda_scan(device: torch.device | str) -> ProbeResult:
    """(usable, reason): whether mamba_ssm's kernel imports AND a tiny real call on ``device`` succeeds.

    Runs once per device per process (the verdict is cached and logged once), whatever the caller's grad mode
    and autocast state; never raises.
    """
    kernel, reason = _import_selective_scan_fn()
    if kernel is None:
        return False, f"mamba_ssm does not import ({reason})"

    def attempt(dev: torch.device) -> str:
        check_scan_call(kernel, dev)
        return f"a test call of mamba_ssm's selective scan on {dev} matched the torch scan"

    return cached_probe(_probe_results, device, "mamba_ssm's selective scan", attempt)


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
