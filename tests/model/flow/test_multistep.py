import math

import pytest
import torch

from model.flow.sampling import SamplerConfig, integrate


def _reference(a: float) -> float:
    """x(1) for dx/dt = a·x + sin(3t), x(0) = 1, in closed form."""
    c = 1.0 + 3.0 / (a * a + 9.0)
    return c * math.exp(a) + (-a * math.sin(3.0) - 3.0 * math.cos(3.0)) / (a * a + 9.0)


def test_ab2_is_second_order_when_halving_steps():
    a = -1.5
    x0 = torch.ones(1, 1, 1, dtype=torch.float64)
    err = [
        abs(integrate(lambda x, t: a * x + math.sin(3.0 * t), x0, s, "ab2").item() - _reference(a))
        for s in (32, 64, 128)
    ]
    for coarse, fine in zip(err, err[1:], strict=False):
        assert coarse / fine == pytest.approx(4.0, rel=0.15)


def test_ab2_costs_one_evaluation_per_step():
    calls = []

    def field(x, t):
        calls.append(t)
        return -1.5 * x + math.sin(3.0 * t)

    x0 = torch.ones(1, 1, 1, dtype=torch.float64)
    ab2 = integrate(field, x0, 10, "ab2").item()
    assert len(calls) == 10 and calls == pytest.approx([i / 10 for i in range(10)])
    assert math.isfinite(ab2)
    assert SamplerConfig(steps=10, cfg_scale=1.0, method="ab2").evaluations == 10
    assert SamplerConfig(steps=10, cfg_scale=1.0, method="heun").evaluations == 20


def test_after_step_sees_every_grid_time_and_replaces_the_state():
    seen = []

    def pin(x, t):
        seen.append(t)
        return torch.zeros_like(x)

    out = integrate(lambda x, t: torch.ones_like(x), torch.ones(1, 1, 2), 4, "heun", after_step=pin)
    assert seen == [0.25, 0.5, 0.75, 1.0]
    assert torch.equal(out, torch.zeros(1, 1, 2))
