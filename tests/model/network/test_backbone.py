"""VelocityNet: shapes, pad and text-mask invariance, zero-init identity, gradient flow, the paper's 189M count."""

import dataclasses

import pytest
import torch

from model.network.backbone import (
    PAPER_NETWORK,
    VelocityNet,
    VelocityNetConfig,
    check_input_values,
    count_parameters,
    velocity_preconditioning,
)
from model.network.conditioning import AdaLNModulation, CrossAttention
from tests.defaults import net_config

PAPER_PARAMETERS = 189_680_256
LATENT, TEXT = 6, 10


def tiny_config(**overrides) -> VelocityNetConfig:
    sizes = dict(hidden=16, depth=2, d_state=4, d_conv=3, expand=2, heads=2, time_dim=8, scan_backend="torch")
    return net_config(latent_dim=LATENT, text_dim=TEXT, **{**sizes, **overrides})


def switch_on_zero_inits(net: VelocityNet, seed: int = 1) -> VelocityNet:
    """Give the zero-initialised gates/modulations/attention outputs random values, so every path is live."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, AdaLNModulation):
                layer = module.linear
            elif isinstance(module, CrossAttention):
                layer = module.to_out
            else:
                continue
            layer.weight.copy_(0.3 * torch.randn(layer.weight.shape, generator=gen))
            layer.bias.copy_(0.3 * torch.randn(layer.bias.shape, generator=gen))
    return net


def inputs(batch: int, frames: int, tokens: int, seed: int = 0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, LATENT, frames, generator=gen, dtype=dtype)
    t = torch.rand(batch, generator=gen, dtype=dtype)
    text = torch.randn(batch, tokens, TEXT, generator=gen, dtype=dtype)
    text_mask = torch.ones(batch, tokens, dtype=torch.bool)
    return x, t, text, text_mask


@pytest.fixture
def live_net() -> VelocityNet:
    torch.manual_seed(0)
    return switch_on_zero_inits(VelocityNet(tiny_config())).double().eval()


def test_forward_shapes_and_zero_pads():
    net = VelocityNet(tiny_config())
    x, t, text, text_mask = inputs(3, 11, 5, dtype=torch.float32)
    mask = torch.arange(11)[None, :] < torch.tensor([11, 7, 1])[:, None]
    v = net(x, t, text, text_mask, mask)
    assert v.shape == x.shape and v.dtype == torch.float32
    assert torch.isfinite(v).all()
    assert torch.all(v[~mask.unsqueeze(1).expand_as(v)] == 0)
    assert net(x, t, text, text_mask).shape == x.shape


def test_pad_invariance_whole_net(live_net):
    """Valid-frame outputs equal those of each clip alone, whatever padding (even NaN) follows it."""
    lengths = [9, 5]
    x, t, text, text_mask = inputs(2, 9, 4)
    alone = [
        live_net(x[i : i + 1, :, :n], t[i : i + 1], text[i : i + 1], text_mask[i : i + 1])
        for i, n in enumerate(lengths)
    ]
    for frames in (9, 14):
        padded = torch.full((2, LATENT, frames), float("nan"), dtype=torch.float64)
        mask = torch.arange(frames)[None, :] < torch.tensor(lengths)[:, None]
        for i, n in enumerate(lengths):
            padded[i, :, :n] = x[i, :, :n]
        v = live_net(padded, t, text, text_mask, mask)
        assert torch.isfinite(v).all()
        for i, n in enumerate(lengths):
            torch.testing.assert_close(v[i, :, :n], alone[i][0], atol=1e-12, rtol=0)
            assert torch.all(v[i, :, n:] == 0)


def test_bidirectional_context_reaches_every_valid_frame(live_net):
    """Sanity check of the invariance test: a change at one valid frame moves valid frames before and after it."""
    x, t, text, text_mask = inputs(1, 10, 3)
    base = live_net(x, t, text, text_mask)
    x2 = x.clone()
    x2[0, :, 5] += 1.0
    diff = (live_net(x2, t, text, text_mask) - base).abs().amax(dim=1)[0]
    assert diff[0] > 1e-6 and diff[9] > 1e-6


def test_text_mask_invariance(live_net):
    """Appending masked text tokens (with arbitrary values) changes nothing; changing a real token does."""
    x, t, text, text_mask = inputs(2, 8, 3)
    base = live_net(x, t, text, text_mask)
    garbage = 1e3 * torch.randn(2, 4, TEXT, dtype=torch.float64)
    longer = torch.cat([text, garbage], dim=1)
    longer_mask = torch.cat([text_mask, torch.zeros(2, 4, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(live_net(x, t, longer, longer_mask), base, atol=1e-12, rtol=0)
    partial_mask = text_mask.clone()
    partial_mask[0, 2] = False
    changed = live_net(x, t, text, partial_mask)
    torch.testing.assert_close(changed[1], base[1], atol=1e-12, rtol=0)
    assert (changed[0] - base[0]).abs().max() > 1e-6


def test_zero_init_net_is_in_projection_then_final_layer():
    """At initialisation every block is the identity (gates, adaLN and the cross-attention output are zero), so
    v = Linear_out(LayerNorm(Conv1d_in(x))): independent of t and of the text, with the final layer non-zero."""
    net = VelocityNet(tiny_config()).double()
    x, t, text, text_mask = inputs(2, 7, 3)
    v = net(x, t, text, text_mask)
    expected = net.final.linear(
        torch.nn.functional.layer_norm(net.in_proj(x).transpose(1, 2), (16,), eps=1e-6)
    )
    torch.testing.assert_close(v, expected.transpose(1, 2), atol=1e-12, rtol=0)
    _, t2, text2, _ = inputs(2, 7, 5, seed=3)
    torch.testing.assert_close(net(x, t2, text2, torch.ones(2, 5, dtype=torch.bool)), v, atol=1e-12, rtol=0)
    assert v.abs().max() > 1e-3


def test_gradient_reaches_every_parameter_after_one_step():
    net = VelocityNet(tiny_config())
    x, t, text, text_mask = inputs(2, 8, 3, dtype=torch.float32)
    mask = torch.tensor([[True] * 8, [True] * 5 + [False] * 3])
    target = torch.randn_like(x)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        loss = ((net(x, t, text, text_mask, mask) - target) ** 2).mean()
        loss.backward()
        optimizer.step()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert dead == []


def test_paper_config_counts_189m_parameters():
    with torch.device("meta"):
        net = VelocityNet(VelocityNetConfig.paper())
    count = count_parameters(net)
    assert count == PAPER_PARAMETERS
    assert abs(count - 189e6) / 189e6 < 0.02
    assert count_parameters(net, trainable_only=False) == count


def test_config_round_trip_and_the_paper_profile():
    """``VelocityNetConfig.paper()`` is the paper's network, and profiles/paper.yaml asks for exactly it."""
    import yaml

    from pipelines.common.params import config_of
    from tests.defaults import params

    cfg = VelocityNetConfig.paper()
    assert VelocityNetConfig.from_dict(cfg.to_dict()) == cfg
    profile = yaml.safe_load(open("profiles/paper.yaml"))
    paper = params({"model": {**profile["model"], "scan_backend": "auto"}}).model
    assert config_of(VelocityNetConfig, paper, latent_dim=128, text_dim=768) == cfg
    assert {**paper.model_dump(), "scan_backend": "auto"} == PAPER_NETWORK


def test_default_params_yaml_model_section_builds():
    from pipelines.common.params import config_of, load_params

    cfg = config_of(VelocityNetConfig, load_params().model, latent_dim=64, text_dim=384)
    assert count_parameters(VelocityNet(dataclasses.replace(cfg, scan_backend="torch"))) > 0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"hiden": 16}, "model.hiden"),
        ({"heads": 3}, "model.heads"),
        ({"in_kernel": 2}, "model.in_kernel"),
        ({"scan_backend": "gpu"}, "model.scan_backend"),
        ({"dt_rank": "big"}, "model.dt_rank"),
    ],
)
def test_bad_model_params_name_the_key(change, match):
    from pipelines.common.params import config_of
    from tests.defaults import params

    with pytest.raises(ValueError, match=match):
        config_of(VelocityNetConfig, params({"model": change}).model, latent_dim=LATENT, text_dim=TEXT)


def test_bad_inputs_are_rejected_with_the_reason():
    net = VelocityNet(tiny_config())
    x, t, text, text_mask = inputs(2, 5, 3, dtype=torch.float32)
    with pytest.raises(ValueError, match="text_dim"):
        net(x, t, text[..., :4], text_mask)
    with pytest.raises(ValueError, match="mask must be a bool"):
        net(x, t, text, text_mask, torch.ones(2, 5))
    # value checks live where batches are made (forward reads no values back: no host sync on a GPU)
    with pytest.raises(ValueError, match="at least one real token"):
        check_input_values(torch.zeros_like(text_mask))
    with pytest.raises(ValueError, match="right-padded"):
        check_input_values(text_mask, torch.tensor([[False, True, True, True, True]] * 2))
    check_input_values(text_mask, torch.tensor([[True, True, True, False, False]] * 2))


def test_preconditioning_coefficients_cancel_the_noise_and_give_f_a_unit_variance_target():
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    c_skip, c_out = velocity_preconditioning(t)
    torch.testing.assert_close(c_skip[[0, 2, 4]], torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(c_out[[0, 2, 4]], torch.tensor([1.0, 2**0.5, 1.0]))
    gen = torch.Generator().manual_seed(0)
    x, z = torch.randn(2, 200_000, generator=gen, dtype=torch.float64)
    for i, ti in enumerate(t.tolist()):
        x_t, v = (1 - ti) * z + ti * x, x - z
        target = (v - c_skip[i].double() * x_t) / c_out[i].double()  # what F learns
        assert abs(float(target.var()) - 1.0) < 0.02, ti
        assert abs(float(torch.corrcoef(torch.stack([target, x_t]))[0, 1])) < 0.01, ti


def test_preconditioned_net_is_the_skip_when_its_output_layer_is_zero_and_keeps_pads_at_zero():
    net = VelocityNet(tiny_config(precondition=True)).double()
    with torch.no_grad():
        net.final.linear.weight.zero_()
        net.final.linear.bias.zero_()
    x, t, text, text_mask = inputs(3, 12, 5)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 8:] = False
    v = net(x, t, text, text_mask, mask)
    c_skip, _ = velocity_preconditioning(t)
    want = (c_skip[:, None, None].double() * x).masked_fill(~mask[:, None, :], 0.0)
    torch.testing.assert_close(v, want)
    assert not VelocityNetConfig.from_dict({**tiny_config().to_dict(), "precondition": True}) == tiny_config()
    legacy = {k: v for k, v in tiny_config().to_dict().items() if k != "precondition"}
    assert VelocityNetConfig.from_dict(legacy).precondition is False
