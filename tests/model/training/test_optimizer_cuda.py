"""The CUDA side of the optimiser: fused AdamW on CUDA devices, chosen by device type (tested through the choice
and the optimiser it builds, without running a fused step here)."""

import torch

from model.training.optimizer import adamw_kernel_options, build_optimizer


def test_fused_adamw_on_cuda_and_cpu_default_elsewhere():
    assert adamw_kernel_options("cuda") == {"fused": True}
    assert adamw_kernel_options("cpu") == {
        "fused": True
    }  # measured faster there too (model/training/optimizer.py)
    assert adamw_kernel_options("mps") == {}
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    assert build_optimizer(net, 1e-3, 0.01, torch.device("cuda", 0)).defaults["fused"] is True
    cpu = build_optimizer(net, 1e-3, 0.01, "cpu")
    assert cpu.defaults["fused"] is True
    assert [g["weight_decay"] for g in cpu.param_groups] == [0.01, 0.0]  # the groups do not depend on it
