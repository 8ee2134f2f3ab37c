import math

import pytest
import torch

from model.network import scan_cuda
from model.network.scan import selective_scan, selective_scan_reference, selective_scan_time_major

F64 = torch.float64


def scan_inputs(batch=2, channels=6, d_state=4, length=29, dtype=F64, device="cpu", seed=0):
    """Random inputs in mamba_ssm layout: u, delta, z (B, D, L); A (D, N); B, C (B, N, L); D, delta_bias (D,)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=F64) * scale).to(dtype=dtype, device=device)

    return {
        "u": rand(batch, channels, length),
        "delta": rand(batch, channels, length, scale=0.5),
        "A": -torch.exp(rand(channels, d_state, scale=0.5)).to(torch.float32 if dtype != F64 else F64),
        "B": rand(batch, d_state, length),
        "C": rand(batch, d_state, length),
        "D": rand(channels).to(torch.float32 if dtype != F64 else F64),
        "z": rand(batch, channels, length),
        "delta_bias": rand(channels, scale=0.5).to(torch.float32 if dtype != F64 else F64),
    }


def run_with_grads(scan_fn, inputs, upstream, **kwargs):
    leaves = {name: value.detach().clone().requires_grad_() for name, value in inputs.items()}
    out = scan_fn(**leaves, delta_softplus=True, **kwargs)
    grads = torch.autograd.grad((out * upstream).sum(), list(leaves.values()))
    return out.detach(), dict(zip(leaves, grads, strict=True))


SCANS = {
    "loop": lambda **kw: selective_scan(**kw, method="loop"),
    "chunked-default": selective_scan,
    "chunked-64": lambda **kw: selective_scan(**kw, chunk_size=64),
    "chunked-7": lambda **kw: selective_scan(**kw, chunk_size=7),
    "chunked-1": lambda **kw: selective_scan(**kw, chunk_size=1),
}


@pytest.mark.parametrize("name", list(SCANS))
def test_scan_matches_sequential_reference_outputs_and_gradients(name):
    inputs = scan_inputs()
    upstream = torch.randn(2, 6, 29, dtype=F64)
    ref_out, ref_grads = run_with_grads(selective_scan_reference, inputs, upstream)
    out, grads = run_with_grads(SCANS[name], inputs, upstream)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    for key in ref_grads:
        torch.testing.assert_close(grads[key], ref_grads[key], rtol=0, atol=1e-11, msg=f"grad of {key}")


@pytest.mark.parametrize("method", ["loop", "chunked"])
def test_scan_without_optional_terms_matches_reference(method):
    inputs = scan_inputs(length=13)
    core = {key: inputs[key] for key in ("u", "A", "B", "C")}
    core["delta"] = torch.rand_like(inputs["delta"])  # already a positive step size: no bias, no softplus
    expected = selective_scan_reference(**core)
    torch.testing.assert_close(selective_scan(**core, method=method), expected, rtol=0, atol=1e-12)


def test_reference_follows_closed_form_for_constant_inputs():
    # One channel, one state, constant inputs: h_t = dt*b*u * (1 - a^t) / (1 - a) with a = exp(dt*A).
    length, dt, a_cont, b, u = 12, 0.3, -0.7, 1.5, 2.0
    ones = torch.ones(1, 1, length, dtype=F64)
    out = selective_scan_reference(u * ones, dt * ones, torch.tensor([[a_cont]], dtype=F64), b * ones, ones)
    decay = math.exp(dt * a_cont)
    expected = [dt * b * u * (1 - decay**t) / (1 - decay) for t in range(1, length + 1)]
    torch.testing.assert_close(out.flatten(), torch.tensor(expected, dtype=F64), rtol=1e-13, atol=0)


def test_chunked_backward_passes_gradcheck():
    inputs = scan_inputs(batch=1, channels=3, d_state=2, length=9, seed=3)
    leaves = [inputs[key].requires_grad_() for key in ("u", "delta", "A", "B", "C")]
    assert torch.autograd.gradcheck(
        lambda u, delta, A, B, C: selective_scan(u, delta, A, B, C, delta_softplus=True, chunk_size=4),
        leaves,
    )


def test_scan_is_causal():
    inputs = scan_inputs(length=20)
    base = selective_scan(**inputs, delta_softplus=True)
    changed = dict(inputs, u=inputs["u"].clone())
    changed["u"][:, :, 11] += 5.0
    after = selective_scan(**changed, delta_softplus=True)
    torch.testing.assert_close(after[..., :11], base[..., :11], rtol=0, atol=0)
    assert (after[..., 11:] - base[..., 11:]).abs().max() > 1e-3


def test_float32_methods_agree_and_half_precision_keeps_its_dtype():
    inputs = scan_inputs(dtype=torch.float32, length=40)
    loop = selective_scan(**inputs, delta_softplus=True, method="loop")
    chunked = selective_scan(**inputs, delta_softplus=True, method="chunked")
    torch.testing.assert_close(chunked, loop, rtol=1e-5, atol=1e-5)
    half = dict(inputs, u=inputs["u"].bfloat16(), z=inputs["z"].bfloat16())
    assert selective_scan(**half, delta_softplus=True).dtype == torch.bfloat16


def test_time_major_entry_point_matches_mamba_ssm_layout():
    inputs = scan_inputs()
    time_major = {k: v.permute(2, 0, 1) if v.dim() == 3 else v for k, v in inputs.items()}
    out = selective_scan_time_major(**time_major, delta_softplus=True)
    expected = selective_scan(**inputs, delta_softplus=True)
    torch.testing.assert_close(out.permute(1, 2, 0), expected, rtol=0, atol=0)


def test_bad_shapes_and_method_are_clear_errors():
    inputs = scan_inputs()
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(**dict(inputs, B=inputs["B"][..., :-1]))
    with pytest.raises(ValueError, match="delta"):
        selective_scan(**dict(inputs, delta=inputs["delta"][:1]))
    with pytest.raises(ValueError, match="method must be one of"):
        selective_scan(**inputs, method="parallel")
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan(**inputs, chunk_size=0)


def _cuda_ready() -> bool:
    return torch.cuda.is_available() and scan_cuda.cuda_scan_importable()


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_ready(), reason="needs a CUDA device and mamba_ssm")
def test_torch_scan_matches_mamba_ssm_reference_and_kernel():
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn, selective_scan_ref

    inputs = scan_inputs(batch=2, channels=64, d_state=16, length=300, dtype=torch.float32, device="cuda")
    upstream = torch.randn(2, 64, 300, device="cuda")
    ours, our_grads = run_with_grads(selective_scan, inputs, upstream)
    for other in (selective_scan_ref, selective_scan_fn):
        theirs, their_grads = run_with_grads(other, inputs, upstream)
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
        for key in our_grads:
            torch.testing.assert_close(our_grads[key], their_grads[key], rtol=1e-3, atol=1e-3, msg=key)
