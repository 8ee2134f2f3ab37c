"""A CPU stand-in for mamba_ssm's ``mamba_inner_fn`` that enforces the contracts its CUDA code enforces.

What ``MambaInnerFn.forward`` of mamba_ssm 2.3.2.post1 (``ops/selective_scan_interface.py``) does, in order, with
its checks: under autocast, cast the x_proj, dt_proj and out_proj weights (and the out bias) to the autocast dtype
(upstream reads the CUDA autocast state; here the state of the input's device, since this runs on CPU); make xz
contiguous if its last stride is not 1; causal-conv1d's ``causal_conv1d_fwd`` (csrc/causal_conv1d.cpp of
causal-conv1d 1.7.0: x and weight in fp32/fp16/bf16, the bias in the weight's dtype, x (B, D, L) with stride 1
along L or D, weight (D, W) with 2 <= W <= 4) with SiLU, computed in fp32 and returned in x's dtype; x_proj as
``F.linear`` on (B L, D); delta = dt_proj weight @ x_dbl[:, :rank].T; B and C as (B, 1, N, L) contiguous; then
``selective_scan_cuda.fwd``'s contract (``kernel_contract.check_kernel_contract``); out_proj on the gated output.
The values are computed with plain torch ops and the torch scan, so autograd gives the gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.network.scan import selective_scan
from tests.model.network.kernel_contract import (
    INPUT_DTYPES,
    ContractCheckingScan,
    KernelContractError,
    check_kernel_contract,
)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise KernelContractError(message)


def check_conv_contract(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Raise KernelContractError where causal-conv1d's causal_conv1d_fwd would fail a TORCH_CHECK."""
    _check(x.dtype in INPUT_DTYPES, f"causal_conv1d: x dtype {x.dtype}")
    _check(weight.dtype in INPUT_DTYPES, f"causal_conv1d: weight dtype {weight.dtype}")
    batch, dim, _ = x.shape
    _check(weight.dim() == 2 and weight.shape[0] == dim, f"causal_conv1d: weight shape {tuple(weight.shape)}")
    _check(2 <= weight.shape[1] <= 4, "causal_conv1d only supports width between 2 and 4")
    _check(x.stride(2) == 1 or x.stride(1) == 1, "causal_conv1d: x needs stride 1 along L or D")
    if bias is not None:
        _check(bias.dtype == weight.dtype, f"causal_conv1d: bias dtype {bias.dtype} != weight {weight.dtype}")
        _check(tuple(bias.shape) == (dim,) and bias.stride(-1) == 1, "causal_conv1d: bias shape/stride")


class ContractCheckingInnerFn:
    """Callable like ``mamba_inner_fn``; counts calls and backward calls, enforces the contracts (module doc)."""

    def __init__(self) -> None:
        self.calls = 0
        self.backward_calls = 0

    def __call__(
        self,
        xz,
        conv1d_weight,
        conv1d_bias,
        x_proj_weight,
        delta_proj_weight,
        out_proj_weight,
        out_proj_bias,
        A,
        B=None,
        C=None,
        D=None,
        delta_bias=None,
        B_proj_bias=None,
        C_proj_bias=None,
        delta_softplus=True,
        checkpoint_lvl=1,
    ):
        _check(B is None and C is None, "the stand-in covers input-dependent B and C only (as the mixer)")
        device = xz.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            x_proj_weight, delta_proj_weight = x_proj_weight.to(dtype), delta_proj_weight.to(dtype)
            out_proj_weight = out_proj_weight.to(dtype)
            out_proj_bias = None if out_proj_bias is None else out_proj_bias.to(dtype)
        if xz.stride(-1) != 1:
            xz = xz.contiguous()
        batch, _, length = xz.shape
        rank, d_state = delta_proj_weight.shape[1], A.shape[1]
        weight = conv1d_weight[:, 0, :]
        x, z = xz.chunk(2, dim=1)
        check_conv_contract(x, weight, conv1d_bias)
        conv = F.conv1d(
            x.float(),
            weight.float()[:, None, :],
            None if conv1d_bias is None else conv1d_bias.float(),
            padding=weight.shape[1] - 1,
            groups=x.shape[1],
        )
        conv_out = F.silu(conv[..., :length]).to(x.dtype)
        x_dbl = F.linear(conv_out.transpose(1, 2).reshape(batch * length, -1), x_proj_weight)  # (B L, r + 2N)
        delta = (delta_proj_weight @ x_dbl[:, :rank].t()).view(-1, batch, length).transpose(0, 1)
        B4 = (
            x_dbl[:, rank : rank + d_state]
            .reshape(batch, length, 1, d_state)
            .permute(0, 2, 3, 1)
            .contiguous()
        )
        C4 = x_dbl[:, rank + d_state :].reshape(batch, length, 1, d_state).permute(0, 2, 3, 1).contiguous()
        check_kernel_contract(conv_out, delta, A, B4, C4, D, z, delta_bias)
        self.calls += 1
        y = selective_scan(conv_out, delta, A, B4[:, 0], C4[:, 0], D, z, delta_bias, delta_softplus)
        _check(y.dtype == conv_out.dtype, f"scan output dtype {y.dtype} != {conv_out.dtype}")
        out = F.linear(y.transpose(1, 2), out_proj_weight, out_proj_bias)
        if out.requires_grad:

            def count(grad: torch.Tensor) -> None:
                self.backward_calls += 1

            out.register_hook(count)
        return out


def install_fused_stand_in(monkeypatch) -> ContractCheckingInnerFn:
    """Route every mixer through the fused path's seam with the stand-in as ``mamba_inner_fn``.

    The slot is ``scan_fused._import_mamba_inner_fn``; the backend choice says ``cuda`` for CPU inputs; the
    fused probe really runs (the stand-in on CPU, fp32 and bf16 autocast) with a fresh cache; the unfused seam
    gets the scan stand-in, so a fallback shows in its counter.
    """
    import model.network.mamba as mamba_module
    from model.network import scan_cuda, scan_fused

    stand_in = ContractCheckingInnerFn()
    monkeypatch.setattr(scan_fused, "_import_mamba_inner_fn", lambda: (stand_in, ""))
    monkeypatch.setattr(scan_fused, "_probe_results", {})
    monkeypatch.setattr(scan_fused, "_problems", {})
    scan = ContractCheckingScan()
    monkeypatch.setattr(scan_cuda, "_import_selective_scan_fn", lambda: (scan, ""))
    monkeypatch.setattr(
        mamba_module,
        "choose_scan_backend",
        lambda requested, device, probes=None: ("cuda", "stand-in on CPU"),
    )
    stand_in.unfused = scan
    return stand_in
