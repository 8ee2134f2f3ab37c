"""A CPU stand-in for mamba_ssm's ``selective_scan_fn`` that enforces the CUDA kernel's input contract.

The checks are those of ``selective_scan_fwd``/``selective_scan_bwd`` in mamba_ssm 2.3.2.post1's
``csrc/selective_scan/selective_scan.cpp``, applied after what its Python wrapper (``SelectiveScanFn``) does
first: make u, delta, B, C, z contiguous when their last stride is not 1 and give 3-D B/C a group axis. Only the
device check is left out (this runs on CPU). The result is then computed with the torch scan, and the incoming
gradient of the output is checked as the backward kernel checks it.
"""

from __future__ import annotations

import torch

from model.network.scan import selective_scan

INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class KernelContractError(RuntimeError):
    """An input the CUDA kernel would refuse (a TORCH_CHECK failure there)."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise KernelContractError(message)


def _last_stride_ok(t: torch.Tensor) -> bool:
    return t.stride(-1) == 1 or t.size(-1) == 1


def check_kernel_contract(u, delta, A, B, C, D=None, z=None, delta_bias=None) -> None:
    """Raise KernelContractError where selective_scan_cuda.fwd would fail a TORCH_CHECK."""
    if u.stride(-1) != 1:  # the wrapper's contiguity fixes
        u = u.contiguous()
    if delta.stride(-1) != 1:
        delta = delta.contiguous()
    B = B if B.stride(-1) == 1 else B.contiguous()
    C = C if C.stride(-1) == 1 else C.contiguous()
    B = B.unsqueeze(1) if B.dim() == 3 else B
    C = C.unsqueeze(1) if C.dim() == 3 else C
    input_type, weight_type = u.dtype, A.dtype
    _check(input_type in INPUT_DTYPES, f"u dtype {input_type} not in fp32/fp16/bf16")
    _check(weight_type in (torch.float32, torch.complex64), f"A dtype {weight_type} must be fp32")
    _check(delta.dtype == input_type, f"delta dtype {delta.dtype} != u dtype {input_type}")
    for name, mat in (("B", B), ("C", C)):
        variable = mat.dim() >= 3
        want = input_type if variable else weight_type
        _check(mat.dtype == want, f"{name} dtype {mat.dtype} != {want}")
    _check(_last_stride_ok(u) and _last_stride_ok(delta), "u/delta last-dim stride must be 1")
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    _check(dstate <= 256, "selective_scan only supports state dimension <= 256")
    _check(tuple(delta.shape) == (batch, dim, seqlen), f"delta shape {tuple(delta.shape)}")
    _check(tuple(A.shape) == (dim, dstate), f"A shape {tuple(A.shape)}")
    for name, mat in (("B", B), ("C", C)):
        _check(tuple(mat.shape) == (batch, mat.shape[1], dstate, seqlen), f"{name} shape {tuple(mat.shape)}")
        _check(_last_stride_ok(mat), f"{name} last-dim stride must be 1")
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None:
            _check(vec.dtype == torch.float32, f"{name} dtype {vec.dtype} must be fp32")
            _check(_last_stride_ok(vec) and tuple(vec.shape) == (dim,), f"{name} shape/stride")
    if z is not None:
        _check(z.dtype == input_type, f"z dtype {z.dtype} != u dtype {input_type}")
        _check(tuple(z.shape) == (batch, dim, seqlen), f"z shape {tuple(z.shape)}")


class ContractCheckingScan:
    """Callable like ``selective_scan_fn``; counts calls, enforces the contract, computes with the torch scan."""

    def __init__(self) -> None:
        self.calls = 0
        self.backward_calls = 0

    def __call__(self, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        check_kernel_contract(u, delta, A, B, C, D, z, delta_bias)
        self.calls += 1
        out = selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        _check(out.dtype == delta.dtype, f"output dtype {out.dtype} != {delta.dtype} (the kernel's)")
        if out.requires_grad:
            input_type = u.dtype

            def check_grad(grad: torch.Tensor) -> None:
                _check(grad.dtype == input_type, f"backward: dout dtype {grad.dtype} != u dtype {input_type}")
                self.backward_calls += 1

            out.register_hook(check_grad)
        return out


def install_stand_in(monkeypatch) -> ContractCheckingScan:
    """Route every mixer through the CUDA backend's seam, with the stand-in in place of mamba_ssm's kernel.

    The kernel slot is ``scan_cuda._import_selective_scan_fn`` (what ``scan_cuda.selective_scan_cuda`` calls),
    and the backend choice says ``cuda`` for CPU inputs; everything between the mixer and the kernel is real.
    mamba_ssm's fused path is reported missing, so the mixers take the unfused seam (the fused one has its own
    stand-in: ``tests/model/network/fused_contract.py``).
    """
    import model.network.mamba as mamba_module
    from model.network import scan_cuda, scan_fused

    stand_in = ContractCheckingScan()
    monkeypatch.setattr(scan_cuda, "_import_selective_scan_fn", lambda: (stand_in, ""))
    monkeypatch.setattr(scan_fused, "_import_mamba_inner_fn", lambda: (None, "stand-in: unfused seam"))
    monkeypatch.setattr(scan_fused, "_problems", {})
    monkeypatch.setattr(
        mamba_module,
        "choose_scan_backend",
        lambda requested, device, probe=None: ("cuda", "kernel stand-in on CPU"),
    )
    return stand_in
