"""The Triton selective scan against the step-by-step reference: values and the gradient of every input.

Without a GPU the kernels run in Triton's CPU interpreter: tests/conftest.py sets ``TRITON_INTERPRET=1`` when
CUDA is absent, at the start of the session, because triton fixes the mode of every ``@triton.jit`` function
(its own ``tl.zeros`` included) when it is first imported. With a GPU the same tests run the compiled kernels
on it. Sizes are tiny: the interpreter executes every Triton op in Python.
"""

import pytest
import torch

from model.network.bimamba import BiMamba
from model.network.scan import selective_scan_reference
from model.network.scan_triton import selective_scan_triton

pytest.importorskip("triton", reason="triton is not installed (pip install '.[gpu]', or the dev extra)")

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
F32, BF16, F64 = torch.float32, torch.bfloat16, torch.float64
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
FP32_TOL = 1e-5  # max |error| / max |reference|: fp32 state vs an fp64 reference
BF16_TOL = 2e-2  # bf16 output and gradients (8-bit mantissa) vs the fp64 reference on the same bf16 inputs


def make_inputs(batch, channels, n_state, length, *, D=True, z=True, bias=True, softplus=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs = {
        "u": torch.randn(batch, channels, length, generator=gen),
        # raw delta may be negative only where softplus makes it positive
        "delta": 0.7 * torch.randn(batch, channels, length, generator=gen)
        if softplus
        else 0.05 + 0.8 * torch.rand(batch, channels, length, generator=gen),
        "A": -(0.1 + 2.0 * torch.rand(channels, n_state, generator=gen)),
        "B": torch.randn(batch, n_state, length, generator=gen),
        "C": torch.randn(batch, n_state, length, generator=gen),
        "D": torch.randn(channels, generator=gen) if D else None,
        "z": torch.randn(batch, channels, length, generator=gen) if z else None,
        "delta_bias": 0.1 + 0.2 * torch.rand(channels, generator=gen) if bias else None,
    }
    upstream = torch.randn(batch, channels, length, generator=gen)
    return inputs, upstream


def run_scan(fn, inputs, upstream, softplus, **kwargs):
    """(out, {name: grad}) of sum(out * upstream); leaves keep each input's dtype and layout."""
    leaves = {name: t.detach().clone().requires_grad_() for name, t in inputs.items() if t is not None}
    args = {name: (leaves[name] if name in leaves else None) for name in NAMES}
    out = fn(*(args[name] for name in NAMES), delta_softplus=softplus, **kwargs)
    (out.to(upstream.dtype) * upstream).sum().backward()
    return out.detach(), {name: leaf.grad for name, leaf in leaves.items()}


def assert_scaled_close(got, want, tol, what):
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    error = float((got.double() - want).abs().max())
    scale = float(want.abs().max())
    assert error <= tol * max(scale, 1e-30), f"{what}: max error {error:.3g} vs max |reference| {scale:.3g}"


def check_against_reference(inputs, upstream, softplus, tol, **kwargs):
    """Triton scan on DEVICE vs the fp64 reference on the same (rounded) values, outputs and all gradients."""
    device_inputs = {k: None if t is None else t.to(DEVICE) for k, t in inputs.items()}
    out, grads = run_scan(selective_scan_triton, device_inputs, upstream.to(DEVICE), softplus, **kwargs)
    assert out.dtype == inputs["u"].dtype
    rounded_upstream = upstream.to(out.dtype).double()  # the kernel sees the incoming gradient in out's dtype
    ref_inputs = {k: None if t is None else t.double() for k, t in inputs.items()}
    ref_out, ref_grads = run_scan(selective_scan_reference, ref_inputs, rounded_upstream, softplus)
    assert_scaled_close(out.cpu(), ref_out, tol, "output")
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        assert grad.dtype == inputs[name].dtype, f"grad of {name} is {grad.dtype}, input {inputs[name].dtype}"
        assert_scaled_close(grad.cpu(), ref_grads[name], tol, f"grad of {name}")
    return out, grads


# (batch, channels, d_state, length, chunk_size, block_d, options): lengths not a multiple of the chunk, shorter
# than it, exactly one step; channels not a multiple of block_d; d_state 1, non-powers of 2, 16 and 64.
FP32_CASES = {
    "all-options": (2, 6, 5, 21, 8, 4, {}),
    "no-D-z-bias-softplus": (2, 6, 5, 21, 8, 4, dict(D=False, z=False, bias=False, softplus=False)),
    "z-only": (2, 4, 4, 13, 4, 4, dict(D=False, bias=False, softplus=False)),
    "D-bias-softplus-no-z": (1, 4, 3, 10, 4, 2, dict(z=False)),
    "length-1": (2, 3, 4, 1, 8, 4, {}),
    "shorter-than-chunk": (2, 4, 8, 5, 8, 4, {}),
    "multiple-of-chunk": (2, 4, 4, 16, 4, 2, {}),
    "d_state-1": (2, 4, 1, 11, 4, 4, {}),
    "d_state-12": (1, 4, 12, 9, 4, 4, {}),
    "d_state-64": (1, 2, 64, 9, 4, 2, {}),
    "default-chunk-and-block": (2, 8, 16, 40, None, None, {}),
}


@pytest.mark.parametrize("case", FP32_CASES.values(), ids=FP32_CASES.keys())
def test_fp32_matches_reference_values_and_every_gradient(case):
    batch, channels, n_state, length, chunk, block_d, options = case
    inputs, upstream = make_inputs(batch, channels, n_state, length, **options)
    kwargs = {"block_d": block_d} | ({} if chunk is None else {"chunk_size": chunk})
    check_against_reference(inputs, upstream, options.get("softplus", True), FP32_TOL, **kwargs)


@pytest.mark.parametrize("weights_bf16", [False, True], ids=["fp32-weights", "bf16-weights"])
def test_bf16_matches_reference_within_bf16_rounding(weights_bf16):
    # bf16 activations with fp32 A, D, delta_bias is what the mixer passes under bf16; also all-bf16
    inputs, upstream = make_inputs(2, 6, 5, 21)
    for name in ("u", "delta", "B", "C", "z") + (("A", "D", "delta_bias") if weights_bf16 else ()):
        inputs[name] = inputs[name].to(BF16)
    check_against_reference(inputs, upstream, True, BF16_TOL, chunk_size=8, block_d=4)


def test_non_contiguous_inputs():
    inputs, upstream = make_inputs(2, 5, 3, 12)
    # the mixer hands over permuted time-major tensors; A arrives transposed here
    inputs["u"] = inputs["u"].permute(2, 0, 1).contiguous().permute(1, 2, 0)
    inputs["B"] = inputs["B"].transpose(1, 2).contiguous().transpose(1, 2)
    inputs["C"] = inputs["C"].repeat_interleave(2, dim=-1)[:, :, ::2]
    inputs["A"] = inputs["A"].t().contiguous().t()
    assert not any(inputs[k].is_contiguous() for k in ("u", "B", "C", "A"))
    check_against_reference(inputs, upstream, True, FP32_TOL, chunk_size=4, block_d=4)


def test_inference_path_and_deterministic_gradients():
    inputs, upstream = make_inputs(2, 6, 4, 14)
    device_inputs = {k: t.to(DEVICE) for k, t in inputs.items()}
    with torch.no_grad():  # parameters that require grad, as in generation: no state is saved here
        leaves = [device_inputs[n].clone().requires_grad_() for n in NAMES]
        plain = selective_scan_triton(*leaves, delta_softplus=True, chunk_size=4)
    runs = [
        run_scan(selective_scan_triton, device_inputs, upstream.to(DEVICE), True, chunk_size=4)
        for _ in range(2)
    ]
    assert torch.equal(plain, runs[0][0])
    for name in runs[0][1]:  # partial sums reduced in a fixed order: bit-identical run to run
        assert torch.equal(runs[0][1][name], runs[1][1][name]), name


def test_rejects_float64_and_bad_shapes_with_clear_errors():
    inputs, _ = make_inputs(1, 2, 2, 3)
    args = [inputs[n] for n in NAMES]
    with pytest.raises(ValueError, match="float64.*model.scan_backend `torch`"):
        selective_scan_triton(*([args[0].double()] + args[1:]))
    with pytest.raises(ValueError, match=r"B must have shape \(1, 2, 3\)"):
        selective_scan_triton(*(args[:3] + [args[3].transpose(1, 2)] + args[4:]))


def make_bimamba(backend: str, dtype: torch.dtype, seed: int = 0) -> BiMamba:
    torch.manual_seed(seed)
    layer = BiMamba(8, d_state=4, expand=1, scan_backend=backend, chunk_size=8).to(DEVICE, dtype)
    with torch.no_grad():  # off the init, so that D, dt bias and A_log matter in every gradient
        for param in layer.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return layer


def bimamba_run(layer, x, mask, upstream):
    leaf = x.detach().clone().requires_grad_()
    out = layer(leaf, mask)
    (out.float() * upstream).sum().backward()
    grads = {"input": leaf.grad} | {name: p.grad for name, p in layer.named_parameters()}
    layer.zero_grad(set_to_none=True)
    return out.detach(), grads


@pytest.mark.parametrize("dtype,tol", [(F32, FP32_TOL), (BF16, BF16_TOL)], ids=["fp32", "bf16"])
def test_bimamba_triton_backend_equals_torch_backend(dtype, tol):
    x = torch.randn(2, 19, 8, device=DEVICE).to(dtype)
    mask = torch.arange(19, device=DEVICE)[None, :] < torch.tensor([19, 11], device=DEVICE)[:, None]
    upstream = torch.randn(2, 19, 8, device=DEVICE)
    out, grads = bimamba_run(make_bimamba("triton", dtype), x, mask, upstream)
    ref_out, ref_grads = bimamba_run(make_bimamba("torch", dtype), x, mask, upstream)
    assert out.dtype == dtype
    assert_scaled_close(out.cpu(), ref_out.cpu().double(), tol, "BiMamba output")
    for name, grad in ref_grads.items():
        assert grads[name].dtype == grad.dtype, name
        assert_scaled_close(grads[name].cpu(), grad.cpu().double(), tol, f"BiMamba grad of {name}")


def test_padded_batch_equals_each_sequence_alone():
    # the BiMamba zeroes pads and reverses within length: pads must not reach the Triton scan's valid frames
    layer = make_bimamba("triton", F32)
    lengths, time = [13, 6], 13
    sequences = [torch.randn(n, 8, device=DEVICE) for n in lengths]
    upstreams = [torch.randn(n, 8, device=DEVICE) for n in lengths]
    batch = torch.randn(2, time, 8, device=DEVICE) * 100  # pads hold large garbage
    upstream = torch.randn(2, time, 8, device=DEVICE)
    for row, (seq, up) in enumerate(zip(sequences, upstreams, strict=True)):
        batch[row, : len(seq)], upstream[row, : len(seq)] = seq, up
    mask = torch.arange(time, device=DEVICE)[None, :] < torch.tensor(lengths, device=DEVICE)[:, None]
    out, grads = bimamba_run(layer, batch, mask, upstream)
    param_sums = {}
    for row, (seq, up) in enumerate(zip(sequences, upstreams, strict=True)):
        alone, alone_grads = bimamba_run(layer, seq[None], None, up[None])
        n = len(seq)
        assert_scaled_close(out[row, :n].cpu(), alone[0].cpu().double(), FP32_TOL, f"row {row} output")
        grad_in = alone_grads.pop("input")
        assert_scaled_close(
            grads["input"][row, :n].cpu(), grad_in[0].cpu().double(), FP32_TOL, f"row {row} dx"
        )
        assert torch.equal(grads["input"][row, n:], torch.zeros_like(grads["input"][row, n:]))
        for name, grad in alone_grads.items():
            param_sums[name] = param_sums.get(name, 0) + grad.double()
    for name, grad in param_sums.items():  # the padded batch's parameter gradients = the sum over sequences
        assert_scaled_close(grads[name].cpu(), grad.cpu(), FP32_TOL, f"padded batch grad of {name}")
