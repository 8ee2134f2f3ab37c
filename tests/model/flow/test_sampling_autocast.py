"""Sampling under bf16 autocast with the mixers calling a stand-in for mamba_ssm's kernel (its dtype contract)."""

import torch

from model.flow.sampling import sample
from model.network.backbone import VelocityNet
from tests.defaults import net_config
from tests.model.network.kernel_contract import install_stand_in


def _net():
    torch.manual_seed(0)
    cfg = net_config(
        latent_dim=4,
        text_dim=8,
        hidden=16,
        depth=2,
        d_state=4,
        d_conv=4,
        expand=1,
        heads=2,
        mlp_ratio=1.0,
        time_dim=8,
        scan_backend="auto",
    )
    net = VelocityNet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def _sample(net, **kw):
    text, text_mask = (
        torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(5)),
        torch.ones(2, 3).bool(),
    )
    null_text, null_mask = torch.zeros(1, 1, 8), torch.ones(1, 1, dtype=torch.bool)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    return sample(
        net,
        text,
        text_mask,
        null_text,
        null_mask,
        12,
        steps=4,
        cfg_scale=3.5,
        method="heun",
        generator=gens,
        latent_dim=4,
        **kw,
    )


def test_sampling_under_autocast_meets_the_kernel_contract_and_tracks_fp32(monkeypatch):
    net = _net()
    reference = _sample(net)
    stand_in = install_stand_in(monkeypatch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = _sample(net, frame_mask=torch.tensor([[True] * 12, [True] * 9 + [False] * 3]))
    assert stand_in.calls == 4 * 2 * 2 * 2  # steps x heun evaluations x blocks x (forward, reverse) mixers
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert torch.equal(low[1, :, 9:], torch.zeros(4, 3))
    relative = ((low[0] - reference[0]).norm() / reference[0].norm()).item()
    assert relative < 5e-2, relative
