"""This process's place among data-parallel training workers, and the in-process (one worker) defaults.

Shared by the training loop (:mod:`model.training.loop`), its set-up (:mod:`model.training.setup`) and the Ray Train
launcher (:mod:`model.training.ray_train`); it imports nothing else from flowjam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """This process's place among the data-parallel workers; collectives are no-ops for one worker."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar tensor over all ranks, as a 0-d fp32 tensor on its device (no host sync)."""
        value = value.detach().float().reshape(1)
        if self.world_size > 1:
            value = value.clone()
            torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.SUM)
            value /= self.world_size
        return value.reshape(())

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out


SINGLE = DistContext()


def no_wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """The in-process 'prepare': move to the device, no DDP."""
    return module.to(device)
