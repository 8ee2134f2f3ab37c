"""mamba_ssm's fused Mamba path: ``mamba_inner_fn``, imported lazily, checked and probed like the scan kernel.

``mamba_inner_fn`` (``mamba_ssm/ops/selective_scan_interface.py`` of mamba_ssm 2.3.2.post1, ``MambaInnerFn``) is
what upstream's ``Mamba`` trains through: causal-conv1d's fused conv + SiLU, x_proj, dt_proj, the selective scan
and out_proj in one autograd function, whose backward recomputes the conv output and delta instead of saving
them. It takes the mixer's own parameters (mamba_ssm's names, which ``model.network.mamba.Mamba`` keeps), so the
weights are the same whichever path runs. Arguments: ``xz`` (B, 2 * d_inner, L) with the last stride 1, the
conv weight (d_inner, 1, d_conv) and bias, ``x_proj``, ``dt_proj`` and ``out_proj`` weights (+ out bias), A
(d_inner, N) fp32, D and the delta bias fp32; returns (B, L, d_model).

It is used only when all of these hold (:func:`fused_problem` says which does not, for the log):

- ``mamba_ssm.ops.selective_scan_interface`` imports and so does causal-conv1d (``causal_conv1d_fwd_function``
  of causal-conv1d >= 1.5.1; without it ``MambaInnerFn`` asserts);
- ``d_conv`` is 2, 3 or 4 (causal-conv1d's ``causal_conv1d_fwd`` refuses other widths);
- the autocast API that ``MambaInnerFn.forward`` calls under autocast exists in this torch:
  ``torch.is_autocast_enabled()`` and ``torch.get_autocast_gpu_dtype()`` (deprecated since torch 2.4 in favour
  of ``torch.get_autocast_dtype('cuda')``; still present in the pinned torch 2.13.0, where it returns the CUDA
  autocast dtype with a DeprecationWarning; checked here so that a torch that drops it falls back, logged,
  instead of failing in the first step);
- one tiny real call on the device, in fp32 and under bf16 autocast, forward and backward, agrees with the
  unfused computation (:func:`probe_fused`, once per device per process, whatever the caller's modes).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from model.network.scan import selective_scan
from model.network.scan_probe import ProbeResult, cached_probe, compare, isolated_modes

CONV_WIDTHS = (2, 3, 4)  # causal-conv1d's causal_conv1d_fwd: width between 2 and 4
BF16_PROBE_TOLERANCE = 5e-2  # bf16 autocast vs fp32 on the probe problem, relative to the largest value
_probe_results: dict[str, ProbeResult] = {}
_problems: dict[tuple[int, str], str] = {}  # fused_problem's verdicts: the mixer asks on every forward


@functools.cache
def _import_mamba_inner_fn() -> tuple[Callable[..., torch.Tensor] | None, str]:
    try:
        from mamba_ssm.ops import selective_scan_interface as interface
    except Exception as error:  # ImportError, or an OSError/RuntimeError from a broken CUDA extension
        return None, f"mamba_ssm does not import ({type(error).__name__}: {error})"
    if getattr(interface, "causal_conv1d_fwd_function", None) is None:
        return None, (
            "causal-conv1d does not import (mamba_inner_fn needs its causal_conv1d_fwd_function, "
            "causal-conv1d >= 1.5.1; the `cuda` extra pins 1.7.0)"
        )
    return interface.mamba_inner_fn, ""


def autocast_api_problem() -> str:
    """Why ``MambaInnerFn``'s autocast calls would fail on this torch ("" when they work)."""
    for name in ("is_autocast_enabled", "get_autocast_gpu_dtype"):
        if not callable(getattr(torch, name, None)):
            return (
                f"torch {torch.__version__} has no torch.{name}(), which mamba_ssm's MambaInnerFn calls "
                "under autocast"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            dtype = torch.get_autocast_gpu_dtype()
        except Exception as error:
            return f"torch.get_autocast_gpu_dtype() fails on torch {torch.__version__} ({error})"
    if not isinstance(dtype, torch.dtype):
        return f"torch.get_autocast_gpu_dtype() returned {dtype!r}, not a dtype"
    return ""


def fused_problem(d_conv: int, device: torch.device | str) -> str:
    """Why mamba_ssm's fused path cannot run a mixer with ``d_conv`` on ``device`` ("" when it can); decided once
    per (d_conv, device) per process."""
    key = (d_conv, str(torch.device(device)))
    if key not in _problems:
        _problems[key] = _find_problem(d_conv, device)
    return _problems[key]


def _find_problem(d_conv: int, device: torch.device | str) -> str:
    fn, reason = _import_mamba_inner_fn()
    if fn is None:
        return reason
    if d_conv not in CONV_WIDTHS:
        return f"d_conv={d_conv}, causal-conv1d takes {CONV_WIDTHS}"
    problem = autocast_api_problem()
    if problem:
        return problem
    usable, reason = probe_fused(device)
    return "" if usable else reason


def inner_reference(
    xz: torch.Tensor,
    conv1d_weight: torch.Tensor,
    conv1d_bias: torch.Tensor | None,
    x_proj_weight: torch.Tensor,
    delta_proj_weight: torch.Tensor,
    out_proj_weight: torch.Tensor,
    out_proj_bias: torch.Tensor | None,
    A: torch.Tensor,
    D: torch.Tensor,
    delta_bias: torch.Tensor,
) -> torch.Tensor:
    """What ``mamba_inner_fn`` computes, in plain torch (the probe's reference): xz (B, 2 * d_inner, L) ->
    (B, L, d_model)."""
    x, z = xz.chunk(2, dim=1)
    length, rank, d_state = xz.shape[-1], delta_proj_weight.shape[1], A.shape[1]
    x = F.silu(
        F.conv1d(x, conv1d_weight, conv1d_bias, padding=conv1d_weight.shape[-1] - 1, groups=x.shape[1])
    )
    x = x[..., :length]
    x_dbl = F.linear(x.transpose(1, 2), x_proj_weight)  # (B, L, rank + 2N)
    delta = F.linear(x_dbl[..., :rank], delta_proj_weight).transpose(1, 2)
    B = x_dbl[..., rank : rank + d_state].transpose(1, 2)
    C = x_dbl[..., rank + d_state :].transpose(1, 2)
    y = selective_scan(x, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=True)
    return F.linear(y.transpose(1, 2), out_proj_weight, out_proj_bias)


def _probe_problem() -> dict[str, torch.Tensor]:
    """A mixer of d_model 4, d_inner 8, d_conv 4, dt_rank 1, d_state 2 on 8 steps, seeded, fp32 on CPU."""
    gen = torch.Generator().manual_seed(0)
    shapes = {
        "xz": (1, 16, 8),
        "conv1d_weight": (8, 1, 4),
        "conv1d_bias": (8,),
        "x_proj_weight": (5, 8),
        "delta_proj_weight": (8, 1),
        "out_proj_weight": (4, 8),
        "A": (8, 2),
        "D": (8,),
        "delta_bias": (8,),
    }
    problem = {name: torch.randn(shape, generator=gen) * 0.5 for name, shape in shapes.items()}
    problem["A"] = -problem["A"].abs() - 0.5
    return problem


def _call(fn: Callable[..., torch.Tensor], problem: dict[str, torch.Tensor], device, autocast: bool) -> list:
    leaves = {k: v.to(device).requires_grad_() for k, v in problem.items()}
    args = [leaves[k] for k in ("xz", "conv1d_weight", "conv1d_bias", "x_proj_weight", "delta_proj_weight")]
    if autocast:  # xz in the autocast dtype, as the mixer's in_proj matmul makes it (MambaInnerFn needs that)
        args[0] = args[0].to(torch.bfloat16)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
        out = fn(
            *args,
            leaves["out_proj_weight"],
            None,
            leaves["A"],
            None,
            None,
            leaves["D"],
            delta_bias=leaves["delta_bias"],
            delta_softplus=True,
        )
    out.float().square().sum().backward()
    names = ("xz", "conv1d_weight", "x_proj_weight", "delta_proj_weight", "out_proj_weight", "A")
    return [out.detach().float().cpu()] + [leaves[k].grad.float().cpu() for k in names]


def _reference(*args, delta_softplus: bool = True, **kwargs) -> torch.Tensor:
    xz, conv_w, conv_b, x_w, dt_w, out_w, out_b, A, _B, _C, D = args
    return inner_reference(xz, conv_w, conv_b, x_w, dt_w, out_w, out_b, A, D, kwargs["delta_bias"])


def probe_fused(device: torch.device | str) -> ProbeResult:
    """(usable, reason): one tiny ``mamba_inner_fn`` call on ``device`` in fp32 (against :func:`inner_reference`
    on CPU) and one under bf16 autocast (finite, within bf16 rounding), forward and backward; cached per device."""
    fn, reason = _import_mamba_inner_fn()
    if fn is None:
        return False, reason

    def attempt(dev: torch.device) -> str:
        with isolated_modes(
            dev
        ):  # the problem is made inside: in inference_mode it would be inference tensors
            got = _call(fn, _probe_problem(), dev, autocast=False)
        with isolated_modes(torch.device("cpu")):
            want = _call(_reference, _probe_problem(), torch.device("cpu"), autocast=False)
        compare(got, want, "mamba_inner_fn")
        with isolated_modes(dev):
            low = _call(fn, _probe_problem(), dev, autocast=True)
        for index, (g, w) in enumerate(zip(low, want, strict=True)):
            error = float((g - w).abs().max()) if torch.isfinite(g).all() else float("inf")
            if error > BF16_PROBE_TOLERANCE * (1.0 + float(w.abs().max())):
                raise RuntimeError(f"under bf16 autocast, tensor {index} is off by {error:.3g}")
        return f"a test call of mamba_inner_fn on {dev} (fp32 and bf16 autocast) matched the unfused path"

    return cached_probe(_probe_results, device, "mamba_ssm's fused mamba_inner_fn", attempt)
