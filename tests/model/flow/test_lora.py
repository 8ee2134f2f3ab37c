"""LoRA on the velocity network through peft: targets, freezing, the identity at start, merging, refusals."""

from __future__ import annotations

import pytest
import torch

from model.flow.lora import LoraSettings, LoraTargetError, adapter_state, add_lora, lora_layers, merged
from model.network.backbone import VelocityNet
from tests.defaults import config, net_config
from tests.model.training.fixtures import TINY_MODEL


def tiny_net(seed: int = 0) -> VelocityNet:
    """A tiny network with every weight moved off its initialisation (whose zero gates would hide the blocks)."""
    torch.manual_seed(seed)
    net = VelocityNet(net_config(latent_dim=4, text_dim=8, **{**TINY_MODEL, "depth": 2}))
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return net


def settings(**values) -> LoraSettings:
    return config(LoraSettings, "train.lora", **{"rank": 2, **values})


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 7, generator=g)
    t = torch.rand(2, generator=g)
    text = torch.randn(2, 3, 8, generator=g)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    return x, t, text, mask


def test_default_targets_adapt_mixer_attention_and_mlp_and_freeze_the_rest():
    net = tiny_net()
    modules = add_lora(net, settings())
    for block in ("blocks.0", "blocks.1"):
        for leaf in ("in_proj", "x_proj", "out_proj"):
            for direction in ("mamba_fwd", "mamba_rev"):
                assert f"{block}.mixer.{direction}.{leaf}" in modules
        assert {f"{block}.mixer.out_proj", f"{block}.mlp.0", f"{block}.mlp.2"} <= set(modules)
        assert {f"{block}.cross_attn.to_{p}" for p in ("q", "k", "v", "out")} <= set(modules)
    assert not any("dt_proj" in m or m.startswith(("in_proj", "time_embed", "final")) for m in modules)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert set(lora_layers(net)) == set(modules)
    assert set(adapter_state(net)) == trainable


def test_the_adapted_network_starts_as_the_base_and_gradients_reach_only_adapters():
    base = tiny_net()
    reference = base(*inputs())
    add_lora(base, settings(rank=3, alpha=6.0))
    out = base(*inputs())
    # lora_B starts at zero (frozen weights alone move float32 results by ~2e-7: autograd picks other kernels)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-6)
    out.square().mean().backward()
    grads = {n for n, p in base.named_parameters() if p.grad is not None}
    assert grads and all(".lora_" in n for n in grads)
    assert any(
        ".lora_A." in n for n in grads
    )  # B = 0 gives A no gradient on the first step, so A's grad is zero
    assert all(p.grad.abs().sum() > 0 for n, p in base.named_parameters() if ".lora_B." in n)


def test_merged_copy_computes_what_the_adapters_compute():
    net = tiny_net()
    add_lora(net, settings(rank=2, alpha=4.0))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.1)
    net.eval()
    fused = merged(net)
    assert not lora_layers(fused) and set(fused.state_dict()) == set(tiny_net().state_dict())
    torch.testing.assert_close(fused(*inputs()), net(*inputs()), rtol=1e-5, atol=1e-6)
    assert lora_layers(net)  # the original keeps its adapters


def test_refuses_targets_that_match_nothing_or_cannot_be_adapted():
    with pytest.raises(
        LoraTargetError, match=r"'blocks\.\*\.nope' matches no module.*Linear/Conv1d layers are e\.g\."
    ):
        add_lora(tiny_net(), settings(targets=["blocks.*.nope"]))
    with pytest.raises(LoraTargetError, match=r"blocks\.0\.cross_attn \(CrossAttention\).*Linear and Conv1d"):
        add_lora(tiny_net(), settings(targets=["blocks.*.cross_attn"]))
    # the scan reads dt_proj.weight directly: an adapter there would never run, so it is refused, not ignored
    with pytest.raises(LoraTargetError, match=r"blocks\.0\.mixer\.mamba_fwd\.dt_proj.*never run"):
        add_lora(tiny_net(), settings(targets=["blocks.*.mixer.mamba_*.dt_proj"]))


def test_settings_validation():
    from pipelines.common.params import ParamsError

    assert not settings(rank=0).enabled
    with pytest.raises(ParamsError, match="train.lora.targets is empty"):
        settings(targets=[])
    assert settings().identity() == {
        "rank": 2,
        "alpha": 16.0,
        "dropout": 0.0,
        "targets": list(settings().targets),
    }
