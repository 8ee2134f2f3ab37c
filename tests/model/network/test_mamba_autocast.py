"""The mixer and the torch scan under bf16 autocast: the kernel's dtype contract, and fp32-vs-bf16 agreement."""

import pytest
import torch

from model.network.backbone import VelocityNet
from model.network.mamba import Mamba
from model.network.scan import selective_scan_time_major
from tests.defaults import net_config
from tests.model.network.kernel_contract import KernelContractError, check_kernel_contract, install_stand_in

BF16 = torch.bfloat16


def test_stand_in_refuses_what_the_kernel_refuses():
    u = torch.randn(1, 4, 6, dtype=BF16)
    A, D = -torch.rand(4, 2), torch.ones(4)
    B = C = torch.randn(1, 2, 6, dtype=BF16)
    check_kernel_contract(u, u.clone(), A, B, C, D, u.clone(), D.clone())
    bad = {
        "delta dtype": dict(delta=u.float()),
        "B dtype": dict(B=B.float()),
        "C dtype": dict(C=C.float()),
        "z dtype": dict(z=u.float()),
        "A dtype": dict(A=A.to(BF16)),
        "D dtype": dict(D=D.to(BF16)),
        "delta_bias dtype": dict(delta_bias=D.to(BF16)),
        "state dimension": dict(
            A=-torch.rand(4, 257), B=torch.randn(1, 257, 6, dtype=BF16), C=torch.randn(1, 257, 6, dtype=BF16)
        ),
    }
    for what, change in bad.items():
        args = dict(u=u, delta=u.clone(), A=A, B=B, C=C, D=D, z=u.clone(), delta_bias=D.clone(), **{})
        args.update(change)
        with pytest.raises(KernelContractError, match=what.split()[0]):
            check_kernel_contract(**args)
    with pytest.raises(KernelContractError, match="u dtype"):
        check_kernel_contract(u.double(), u.double(), A, B.double(), C.double())


def test_mixer_under_autocast_meets_the_kernel_contract_forward_and_backward(monkeypatch):
    stand_in = install_stand_in(monkeypatch)
    torch.manual_seed(0)
    mixer = Mamba(16, d_state=4, scan_backend="auto")
    x = torch.randn(2, 9, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=BF16):
        y = mixer(x)
    y.float().square().mean().backward()
    assert stand_in.calls == 1 and stand_in.backward_calls == 1
    assert y.dtype == BF16 and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in mixer.parameters())


def test_conv_under_autocast_runs_in_the_input_dtype():
    mixer = Mamba(16, d_state=4, scan_backend="torch")
    x = torch.randn(7, 2, mixer.d_inner, dtype=BF16)
    assert mixer._causal_conv(x).dtype == BF16
    assert mixer._causal_conv(x.float()).dtype == torch.float32


def _scan_inputs(length=40, batch=2, channels=8, d_state=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(length, batch, channels, generator=gen)
    delta = torch.randn(length, batch, channels, generator=gen) * 0.5
    A = -torch.rand(channels, d_state, generator=gen) - 0.5
    B = torch.randn(length, batch, d_state, generator=gen)
    C = torch.randn(length, batch, d_state, generator=gen)
    D, bias = torch.randn(channels, generator=gen), torch.randn(channels, generator=gen) * 0.1
    z = torch.randn(length, batch, channels, generator=gen)
    return [u, delta, A, B, C, D, z, bias]


@pytest.mark.parametrize("method", ["chunked", "loop"])
def test_torch_scan_ignores_autocast_forward_and_backward(method):
    """fp32 inputs give the same fp32 result and gradients with and without autocast: nothing drops to bf16."""
    results = []
    for autocast in (False, True):
        leaves = [t.clone().requires_grad_() for t in _scan_inputs()]
        with torch.autocast("cpu", dtype=BF16, enabled=autocast):
            y = selective_scan_time_major(*leaves, delta_softplus=True, method=method, chunk_size=8)
        y.square().sum().backward()  # outside autocast, as torch recommends and the trainer does
        results.append([y.detach()] + [t.grad for t in leaves])
    for plain, cast in zip(*results, strict=True):
        torch.testing.assert_close(cast, plain, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["chunked", "loop"])
def test_torch_scan_bf16_inputs_agree_with_fp32(method):
    """bf16 inputs scanned with an fp32 state: output and gradients within bf16 rounding of the fp32 scan."""
    fp32 = _scan_inputs()
    results = []
    for dtype in (torch.float32, BF16):
        # the same bf16-representable values in both runs, so only the precision of the scan differs
        leaves = [
            t.to(BF16).to(dtype).requires_grad_() if i in (0, 1, 3, 4, 6) else t.clone().requires_grad_()
            for i, t in enumerate(fp32)
        ]
        with torch.autocast("cpu", dtype=BF16, enabled=dtype == BF16):
            y = selective_scan_time_major(*leaves, delta_softplus=True, method=method, chunk_size=8)
        y.float().square().sum().backward()
        results.append([y.detach().float()] + [t.grad.float() for t in leaves])
    for index, (ref, low) in enumerate(zip(*results, strict=True)):
        scale = ref.abs().max().item()
        error = (low - ref).abs().max().item()
        assert error <= 2e-2 * scale, f"tensor {index}: bf16 error {error:.3g} vs scale {scale:.3g}"


def test_velocity_net_under_autocast_agrees_with_fp32():
    torch.manual_seed(0)
    cfg = net_config(
        latent_dim=4,
        text_dim=8,
        hidden=32,
        depth=2,
        d_state=4,
        d_conv=4,
        expand=1,
        heads=2,
        mlp_ratio=1.0,
        time_dim=8,
        scan_backend="torch",
    )
    net = VelocityNet(cfg)
    with torch.no_grad():  # gates and adaLN start at zero: open them so every block contributes
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t = torch.randn(2, 4, 30), torch.rand(2)
    text, text_mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    ref = net(x, t, text, text_mask)
    with torch.autocast("cpu", dtype=BF16):
        low = net(x, t, text, text_mask).float()
    relative = ((low - ref).norm() / ref.norm()).item()
    assert relative < 3e-2, relative
