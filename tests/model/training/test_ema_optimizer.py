"""The EMA's one-dispatch update and the per-device AdamW implementation give the weights of the plain per-tensor
updates (the EMA exactly; fused AdamW to 1e-6 absolute per step), and a checkpoint keeps neither choice."""

import copy

import pytest
import torch

from model.network.backbone import VelocityNet
from model.training.ema import EMA
from model.training.optimizer import (
    IMPLEMENTATION,
    build_optimizer,
    load_optimizer_state,
    param_groups,
)
from tests.defaults import net_config
from tests.model.training.fixtures import TINY_MODEL

# one AdamW step from the same state: the fused CPU kernel rounds in another order than torch's per-tensor loop
FUSED_STEP_ATOL = 1e-6


def tiny_net() -> VelocityNet:
    return VelocityNet(net_config(latent_dim=4, text_dim=8, **TINY_MODEL))


def random_grads(net: torch.nn.Module, generator: torch.Generator) -> list[torch.Tensor]:
    """Gradients spanning six decades, as a network's do (some parameters barely move)."""
    return [
        torch.randn(p.shape, generator=generator)
        * 10 ** float(torch.empty(()).uniform_(-5, 1, generator=generator))
        for p in net.parameters()
    ]


def loop_ema_update(shadow: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """The EMA update as it was: one lerp_ per named parameter in Python."""
    with torch.no_grad():
        params = dict(shadow.named_parameters())
        for name, param in model.named_parameters():
            params[name].lerp_(param.detach(), 1.0 - decay)


def test_foreach_ema_equals_the_per_tensor_loop_exactly():
    net = tiny_net()
    ema, reference = EMA(net, 0.9), copy.deepcopy(net)
    generator = torch.Generator().manual_seed(0)
    for _ in range(25):  # through the warm-up decays into the constant one
        with torch.no_grad():
            for p, g in zip(net.parameters(), random_grads(net, generator), strict=True):
                p.add_(g)
        loop_ema_update(reference, net, ema.current_decay())
        ema.update(net)
    for (name, got), want in zip(ema.module.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(got, want), name


def test_ema_refuses_a_model_of_another_architecture():
    ema = EMA(tiny_net(), 0.9)
    with pytest.raises(ValueError, match="not those of the EMA"):
        ema.update(torch.nn.Linear(2, 2))


def test_cpu_adamw_step_matches_the_per_tensor_loop_to_rounding():
    assert build_optimizer(tiny_net(), 1e-3, 0.01).param_groups[0]["fused"] is IMPLEMENTATION["cpu"].get(
        "fused"
    )
    net = tiny_net()
    loop_net, built_net = copy.deepcopy(net), copy.deepcopy(net)
    loop_opt = torch.optim.AdamW(param_groups(loop_net, 0.01), lr=2e-3, foreach=False)
    built_opt = build_optimizer(built_net, 2e-3, 0.01)
    generator = torch.Generator().manual_seed(1)
    for step in range(8):
        grads = random_grads(net, generator)
        # each step starts from the loop's state, so the bound is per step, not accumulated
        built_net.load_state_dict(loop_net.state_dict())
        load_optimizer_state(built_opt, copy.deepcopy(loop_opt.state_dict()))
        for opt, model in ((loop_opt, loop_net), (built_opt, built_net)):
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.clone()
            opt.step()
        for (name, a), b in zip(loop_net.named_parameters(), built_net.parameters(), strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=FUSED_STEP_ATOL, msg=f"step {step}: {name}")


def test_restoring_a_checkpoint_keeps_this_optimizers_implementation_and_continues_identically():
    net = tiny_net()
    generator = torch.Generator().manual_seed(2)
    grads = [random_grads(net, generator) for _ in range(6)]

    def run(model, opt, steps):
        for g_step in steps:
            for p, g in zip(model.parameters(), g_step, strict=True):
                p.grad = g.clone()
            opt.step()

    straight_net = copy.deepcopy(net)
    straight = build_optimizer(straight_net, 2e-3, 0.01)
    run(straight_net, straight, grads)

    # an old checkpoint: written by torch's default CPU AdamW (foreach None, fused None) after 3 steps
    resumed_net = copy.deepcopy(net)
    first = build_optimizer(resumed_net, 2e-3, 0.01)
    run(resumed_net, first, grads[:3])
    saved = copy.deepcopy(first.state_dict())
    for group in saved["param_groups"]:
        group["foreach"], group["fused"] = None, None
    second = build_optimizer(resumed_net, 2e-3, 0.01)
    load_optimizer_state(second, saved)
    for group in second.param_groups:
        for key, value in IMPLEMENTATION["cpu"].items():
            assert group[key] == value
    run(resumed_net, second, grads[3:])
    for (name, a), b in zip(straight_net.named_parameters(), resumed_net.parameters(), strict=True):
        assert torch.equal(a, b), name
