"""Conditional flow matching on the straight (rectified-flow) path, separate from the velocity network.

Path, with t = 0 pure noise and t = 1 data (the convention of the samplers in ``model/flow/sampling.py``)::

    z ~ N(0, I),   x_t = (1 - t) * z + t * x,   dx_t/dt = x - z   (the regression target)

The network v(x_t, t, c) is trained with the mean squared error to ``x - z`` over valid frames only, so the
zero padding of short clips never contributes. Timesteps come from the logit-normal distribution
``t = sigmoid(n), n ~ N(mean, std^2)`` (more weight mid-path, as in SD3). For classifier-free guidance the text
condition of each example is replaced by the null condition (the encoder's embedding of ``""``) with
probability ``cond_drop``. Every random draw goes through an explicit ``torch.Generator`` so training is
reproducible and resumable bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.flow.tokens import pad_tokens


@dataclass(frozen=True)
class FlowConfig:
    """Objective settings: logit-normal timestep ``t_mean``/``t_std`` and condition dropout ``cond_drop``."""

    t_mean: float
    t_std: float
    cond_drop: float

    def __post_init__(self) -> None:
        if self.t_std <= 0:
            raise ValueError(f"params.yaml: train.t_std must be > 0, got {self.t_std}")
        if not 0.0 <= self.cond_drop < 1.0:
            raise ValueError(f"params.yaml: train.cond_drop must be in [0, 1), got {self.cond_drop}")


# The paper's objective (logit-normal(0, 1) timesteps) with the condition dropout of profiles/paper.yaml (0.1, DiT's)
PAPER_FLOW = FlowConfig(t_mean=0.0, t_std=1.0, cond_drop=0.1)


@dataclass(frozen=True)
class PathSample:
    """One draw from the path. All (B, D, T) except ``t`` (B,)."""

    x_t: torch.Tensor
    target: torch.Tensor
    noise: torch.Tensor
    t: torch.Tensor


def logit_normal_t(
    n: int, mean: float, std: float, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Draw (n,) timesteps t = sigmoid(mean + std * N(0, 1)), strictly inside (0, 1)."""
    normal = torch.randn(n, generator=generator, device=device)
    return torch.sigmoid(mean + std * normal)


def linear_path(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> PathSample:
    """x (B, D, T) data, noise (B, D, T), t (B,) -> x_t = (1 - t) * noise + t * x and target x - noise."""
    if x.shape != noise.shape:
        raise ValueError(f"data {tuple(x.shape)} and noise {tuple(noise.shape)} differ in shape")
    tt = t.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return PathSample(x_t=(1 - tt) * noise + tt * x, target=x - noise, noise=noise, t=t)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over valid frames: pred, target (B, D, T); mask (B, T) bool, True = valid.

    The sum of squared errors over valid (frame, channel) pairs divided by their count: pads never count,
    and an example's weight is proportional to its number of valid frames. ``mask=None`` means all valid.
    The count stays a tensor (no host sync on a GPU), so a mask with no valid frame gives NaN (0 / 0), which the
    training step's non-finite guard skips; batches never have one (training's collate checks every row).
    """
    err = (pred.float() - target.float()).square()
    if mask is None:
        return err.mean()
    valid = mask.unsqueeze(1).expand_as(err)
    count = mask.sum(dtype=err.dtype) * err.shape[1]
    # where, not a product: a NaN/inf on a padded frame must not leak into the loss
    return torch.where(valid, err, torch.zeros((), dtype=err.dtype, device=err.device)).sum() / count


def drop_condition(
    text: torch.Tensor,
    text_mask: torch.Tensor,
    null_text: torch.Tensor,
    null_mask: torch.Tensor,
    p: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace each example's condition by the null condition with probability ``p``.

    text (B, L, E), text_mask (B, L) bool; null_text (1, L0, E), null_mask (1, L0) bool. Both are right-padded
    to L' = max(L, L0). Returns (text (B, L', E), text_mask (B, L'), dropped (B,) bool).
    """
    batch, length, dim = text.shape
    if null_text.shape[-1] != dim:
        raise ValueError(f"null condition has dim {null_text.shape[-1]}, text has {dim}")
    dropped = torch.rand(batch, generator=generator, device=generator.device) < p
    dropped = dropped.to(text.device)
    width = max(length, null_text.shape[1])
    text, text_mask = pad_tokens(text, text_mask, width)
    null_text, null_mask = pad_tokens(null_text.to(text.device, text.dtype), null_mask.to(text.device), width)
    text = torch.where(dropped.view(-1, 1, 1), null_text, text)
    text_mask = torch.where(dropped.view(-1, 1), null_mask, text_mask)
    return text, text_mask, dropped


class FlowMatching(nn.Module):
    """The training objective around a velocity network ``net(x, t, text, text_mask, mask) -> v (B, D, T)``.

    ``null_text`` (1, L0, E) and ``null_mask`` (1, L0) are the null condition, kept as buffers so they follow
    ``.to(device)``. The network is an argument, not a base class: any backbone with that signature works.
    """

    def __init__(self, net: nn.Module, config: FlowConfig, null_text: torch.Tensor, null_mask: torch.Tensor):
        super().__init__()
        if not bool(null_mask.any(dim=-1).all()):  # once here, not per step: drop_condition copies it in
            raise ValueError(
                "FlowMatching: the null condition needs at least one real token (use encode(['']))"
            )
        self.net = net
        self.config = config
        self.register_buffer("null_text", null_text.detach().float(), persistent=False)
        self.register_buffer("null_mask", null_mask.detach().bool(), persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        generator: torch.Generator,
        drop: bool = True,
    ) -> tuple[torch.Tensor, PathSample]:
        """Loss for one batch: x (B, D, T) standardised latents, mask (B, T) bool, text (B, L, E), text_mask (B, L).

        Draws t (B,), noise (B, D, T) and the dropout decisions from ``generator`` (on x's device), in that
        order. ``drop=False`` keeps every condition (validation). Returns (scalar loss, the PathSample).
        """
        t = logit_normal_t(x.shape[0], self.config.t_mean, self.config.t_std, generator, x.device)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if drop and self.config.cond_drop > 0:
            text, text_mask, _ = drop_condition(
                text, text_mask, self.null_text, self.null_mask, self.config.cond_drop, generator
            )
        path = linear_path(x, noise, t)
        if mask is not None:
            # pads stay exactly zero in the network input, as at generation time
            path = PathSample(x_t=path.x_t * mask.unsqueeze(1), target=path.target, noise=noise, t=t)
        pred = self.net(path.x_t, t, text, text_mask, mask)
        return masked_mse(pred, path.target, mask), path
