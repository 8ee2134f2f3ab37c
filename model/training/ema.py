"""Exponential moving average of a model's weights (the weights that are shipped and sampled from).

shadow <- d * shadow + (1 - d) * param after every optimiser step, with the warm-up
d = min(decay, (1 + n) / (10 + n)) over n updates so that early averages are not dominated by the
random initialisation. Buffers are copied, not averaged. Frozen parameters (``requires_grad`` False, e.g. the base
weights under LoRA) never change, so the shadow shares them with the model instead of copying and averaging them.
The update is one ``torch._foreach_lerp_`` over the trainable parameters (one dispatch instead of a Python loop
over every tensor); it computes the same ``lerp_`` per tensor.
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
        self._names = [name for name, p in model.named_parameters() if p.requires_grad]
        shadow = dict(self.module.named_parameters())
        self._shadow = [shadow[name] for name in self._names]
        self._shadow_buffers = [buf for _, buf in self.module.named_buffers()]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current parameters (same architecture as the shadow)."""
        d = self.current_decay()
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        if [name for name, _ in named] != self._names:
            raise ValueError("EMA.update: the model's trainable parameters are not those of the EMA's copy")
        # under no_grad the parameters themselves are the lerp's sources (no detach copies)
        targets = [
            param if param.dtype == shadow.dtype else param.to(shadow.dtype)
            for (_, param), shadow in zip(named, self._shadow, strict=True)
        ]
        if targets:
            torch._foreach_lerp_(self._shadow, targets, 1.0 - d)
        buffers = [buf for _, buf in model.named_buffers()]
        if buffers:
            torch._foreach_copy_(self._shadow_buffers, buffers)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])
