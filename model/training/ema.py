"""Exponential moving average of a model's weights (the weights that are shipped and sampled from).

shadow <- d * shadow + (1 - d) * param after every optimiser step, with the warm-up
d = min(decay, (1 + n) / (10 + n)) over n updates so that early averages are not dominated by the
random initialisation. Buffers are copied, not averaged. Frozen parameters (``requires_grad`` False, e.g. the base
weights under LoRA) never change, so the shadow shares them with the model instead of copying and averaging them.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """Holds an eval-mode copy of ``model`` whose parameters track the EMA of ``model``'s."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"params.yaml: train.ema_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        frozen = {id(p): p for p in model.parameters() if not p.requires_grad}  # deepcopy reuses memo entries
        self.module = copy.deepcopy(model, memo=frozen).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current parameters (same architecture as the shadow)."""
        d = self.current_decay()
        shadow = dict(self.module.named_parameters())
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            shadow[name].lerp_(param.detach().to(shadow[name].dtype), 1.0 - d)
        shadow_buffers = dict(self.module.named_buffers())
        for name, buf in model.named_buffers():
            shadow_buffers[name].copy_(buf)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])
