import logging
import math

import pytest
import torch
from mambapy.mamba import MambaBlock, MambaConfig

import model.network.mamba as mamba_module
from model.network import scan_cuda
from model.network.mamba import Mamba

F64 = torch.float64
# mamba_ssm.modules.mamba_simple.Mamba's parameters for d_model=16, d_state=4, d_conv=4, expand=2 (dt_rank 1).
MAMBA_SSM_SHAPES = {
    "A_log": (32, 4),
    "D": (32,),
    "in_proj.weight": (64, 16),
    "conv1d.weight": (32, 1, 4),
    "conv1d.bias": (32,),
    "x_proj.weight": (9, 32),
    "dt_proj.weight": (32, 1),
    "dt_proj.bias": (32,),
    "out_proj.weight": (16, 32),
}


def mambapy_block(d_model=16, d_state=4, d_conv=4) -> MambaBlock:
    # mambapy's MambaBlock is mamba_ssm's Mamba mixer in pure PyTorch, with the same state-dict keys.
    return MambaBlock(MambaConfig(d_model=d_model, n_layers=1, d_state=d_state, d_conv=d_conv, pscan=True))


def test_parameters_have_mamba_ssm_names_and_shapes():
    mixer = Mamba(16, d_state=4, scan_backend="torch")
    assert {name: tuple(p.shape) for name, p in mixer.state_dict().items()} == MAMBA_SSM_SHAPES
    assert mixer.dt_rank == math.ceil(16 / 16)


def test_initialisation_follows_mamba_ssm():
    mixer = Mamba(64, d_state=8, dt_min=0.002, dt_max=0.05, scan_backend="torch", dtype=torch.bfloat16)
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias.float())
    assert dt.min() >= 0.002 * 0.99 and dt.max() <= 0.05 * 1.01
    assert dt.std() > 0  # log-uniform draws, not a constant
    expected_a_log = torch.log(torch.arange(1, 9, dtype=torch.float32)).repeat(128, 1)
    torch.testing.assert_close(mixer.A_log, torch.nn.Parameter(expected_a_log), rtol=0, atol=0)
    torch.testing.assert_close(mixer.D.detach(), torch.ones(128), rtol=0, atol=0)
    assert mixer.A_log.dtype == mixer.D.dtype == torch.float32  # fp32 even when the mixer is bf16
    assert mixer.in_proj.weight.dtype == torch.bfloat16
    assert mixer.A_log._no_weight_decay and mixer.D._no_weight_decay
    bound = mixer.dt_rank**-0.5
    assert mixer.dt_proj.weight.abs().max() <= bound


@pytest.mark.parametrize("scan_method,d_conv", [("chunked", 4), ("loop", 4), ("chunked", 2)])
def test_torch_backend_matches_mambapy_outputs_and_gradients(scan_method, d_conv):
    ours = Mamba(16, d_state=4, d_conv=d_conv, scan_backend="torch", scan_method=scan_method, chunk_size=8)
    ours = ours.to(F64)
    with torch.no_grad():  # move every weight off its init so the check covers general values
        for param in ours.parameters():
            param.add_(0.05 * torch.randn_like(param))
    reference = mambapy_block(d_conv=d_conv).to(F64)
    reference.load_state_dict(ours.state_dict(), strict=True)  # identical keys: no mapping needed
    x = torch.randn(3, 37, 16, dtype=F64)
    upstream = torch.randn(3, 37, 16, dtype=F64)
    results = []
    for module in (ours, reference):
        x_leaf = x.clone().requires_grad_()
        out = module(x_leaf)
        params = dict(module.named_parameters())
        grads = torch.autograd.grad((out * upstream).sum(), [x_leaf, *params.values()])
        results.append((out.detach(), dict(zip(["input", *params], grads, strict=True))))
    (our_out, our_grads), (ref_out, ref_grads) = results
    torch.testing.assert_close(our_out, ref_out, rtol=0, atol=1e-10)
    assert our_grads.keys() == ref_grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(
            our_grads[name], ref_grads[name], rtol=0, atol=1e-10, msg=f"grad of {name}"
        )


def test_state_dict_round_trips_through_mambapy():
    ours = Mamba(16, d_state=4, scan_backend="torch")
    reference = mambapy_block()
    result = reference.load_state_dict(ours.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        for param in reference.parameters():
            param.mul_(1.1)
    back = Mamba(16, d_state=4, scan_backend="torch")
    result = back.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], tensor, rtol=0, atol=0)
    x = torch.randn(2, 11, 16)
    torch.testing.assert_close(back(x), reference(x), rtol=1e-5, atol=1e-5)


def test_mixer_is_causal_in_time():
    mixer = Mamba(16, d_state=4, scan_backend="torch").to(F64)
    x = torch.randn(2, 25, 16, dtype=F64)
    changed = x.clone()
    changed[:, 14] += 1.0
    base, after = mixer(x), mixer(changed)
    torch.testing.assert_close(after[:, :14], base[:, :14], rtol=0, atol=1e-15)
    assert (after[:, 14:] - base[:, 14:]).abs().max() > 1e-4


def test_auto_backend_on_cpu_runs_torch_and_logs_once(monkeypatch, caplog):
    monkeypatch.setattr(mamba_module, "_logged_choices", set())
    mixer = Mamba(16, d_state=4, scan_backend="auto")
    with caplog.at_level(logging.INFO, logger="model.network.mamba"):
        for _ in range(3):
            mixer(torch.randn(1, 5, 16))
    messages = [r.getMessage() for r in caplog.records if "scan_backend=auto" in r.getMessage()]
    assert len(messages) == 1 and "torch selective scan on cpu" in messages[0]
    assert mixer.resolve_backend(torch.device("cpu")) == "torch"


def test_torch_backend_never_touches_mamba_ssm(monkeypatch):
    def forbidden():
        raise AssertionError("the torch backend must not import mamba_ssm")

    monkeypatch.setattr(scan_cuda, "cuda_scan_importable", forbidden)
    monkeypatch.setattr(scan_cuda, "require_cuda_scan", forbidden)
    Mamba(16, d_state=4, scan_backend="torch")(torch.randn(1, 6, 16))


def test_explicit_cuda_backend_never_falls_back(monkeypatch):
    if scan_cuda.cuda_scan_importable():
        with pytest.raises(ValueError, match="scan_backend='cuda' got input on cpu"):
            Mamba(16, d_state=4, scan_backend="cuda")(torch.randn(1, 6, 16))
    else:
        with pytest.raises(scan_cuda.CudaScanUnavailableError, match=r"build the `cuda` extra.*make gpu-env"):
            Mamba(16, d_state=4, scan_backend="cuda")


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="scan_backend must be one of"):
        Mamba(16, scan_backend="jax")
    with pytest.raises(ValueError, match="scan_method"):
        Mamba(16, scan_method="parallel")
    with pytest.raises(ValueError, match="d_model=16"):
        Mamba(16)(torch.randn(2, 5, 8))


def _cuda_ready() -> bool:
    return torch.cuda.is_available() and scan_cuda.cuda_scan_importable()


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_ready(), reason="needs a CUDA device and mamba_ssm")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_cuda_backend_matches_torch_backend(dtype, tol):
    cuda_mixer = Mamba(64, scan_backend="cuda", device="cuda", dtype=dtype)
    torch_mixer = Mamba(64, scan_backend="torch", device="cuda", dtype=dtype)
    torch_mixer.load_state_dict(cuda_mixer.state_dict())
    x = torch.randn(2, 200, 64, device="cuda", dtype=dtype)
    outs, grads = [], []
    for mixer in (cuda_mixer, torch_mixer):
        x_leaf = x.clone().requires_grad_()
        out = mixer(x_leaf)
        out.float().square().mean().backward()
        outs.append(out.float())
        grads.append(x_leaf.grad.float())
    scale = outs[1].abs().max()
    torch.testing.assert_close(outs[0] / scale, outs[1] / scale, rtol=tol, atol=tol)
    torch.testing.assert_close(grads[0], grads[1], rtol=tol, atol=tol * grads[1].abs().max().item())
