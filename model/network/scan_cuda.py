"""The CUDA selective-scan backend: mamba_ssm's fused kernel, imported lazily and only here.

mamba_ssm is the optional ``cuda`` extra (``pip install -e '.[cuda]'`` on a machine with CUDA and nvcc). Its
``selective_scan_interface`` imports the compiled ``selective_scan_cuda`` extension unconditionally, so it cannot
be imported on a CPU-only machine; nothing else in the package imports it, and CPU users never pay for it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

INSTALL_HINT = (
    "install the `cuda` extra on a machine with a CUDA toolkit (`pip install -e '.[cuda]'`, which builds "
    "mamba-ssm and causal-conv1d from source), or set model.scan_backend to `torch` or `auto`"
)


class CudaScanUnavailableError(ImportError):
    """scan_backend 'cuda' was requested but mamba_ssm's kernels cannot be imported here."""


@functools.cache
def _import_selective_scan_fn() -> tuple[Callable[..., torch.Tensor] | None, str]:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as error:  # ImportError, or an OSError/RuntimeError from a broken CUDA extension
        return None, f"{type(error).__name__}: {error}"
    return selective_scan_fn, ""


def cuda_scan_importable() -> bool:
    """Whether mamba_ssm's selective-scan kernel imports in this process (cached after the first call)."""
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

    u, delta, z: (B, D, L) on a CUDA device; A: (D, N) fp32; B, C: (B, N, L); D, delta_bias: (D,) fp32.
    """
    if not u.is_cuda:
        raise ValueError(
            f"scan_backend='cuda' got a tensor on {u.device}; move the model and inputs to a CUDA device "
            "or set model.scan_backend to `torch` or `auto`"
        )
    scan_fn = require_cuda_scan()
    return scan_fn(
        u.contiguous(),
        delta.contiguous(),
        A.contiguous(),
        B.contiguous(),
        C.contiguous(),
        D,
        z=None if z is None else z.contiguous(),
        delta_bias=delta_bias,
        delta_softplus=delta_softplus,
    )
