"""The velocity network v(x_t, t, text): Conv1d in-projection, N BiMamba blocks, adaLN-modulated output.

Per block (h: (B, T, hidden); c = TimestepEmbedder(t); all three sub-layers residual)::

    shift1, scale1, gate1, shift2, scale2, gate2 = AdaLNModulation(c)           (zero-init)
    h = h + gate1 * BiMamba(LN(h) * (1 + scale1) + shift1, frame_mask)
    h = h + CrossAttention(LN_affine(h), text, text_mask)                       (zero-init output projection)
    h = h + gate2 * MLP(LN(h) * (1 + scale2) + shift2)                          (Linear -> GELU -> Linear)

Around the blocks: ``Conv1d(latent_dim -> hidden, in_kernel)`` on the masked input, and a final
``Linear(LN(h) * (1 + scale) + shift)`` (hidden -> latent_dim) with its own zero-init adaLN (shift, scale).
With ``precondition`` the network's output F is turned into the velocity through a skip from its input,
``v = c_skip(t) · x_t + c_out(t) · F`` (:func:`velocity_preconditioning`), so the noise that the velocity must cancel
reaches the output exactly instead of through every layer.
Padded frames are zeroed at the input, after the in-projection, after every block and at the output; the
BiMamba is length-aware and the cross-attention only attends to text, so padding never reaches a valid frame.

``forward`` checks shapes and dtypes only and reads no tensor value back to the host (no sync on a GPU): the
frame lengths are computed once per batch on the device and handed to every BiMamba, and the value checks
(right-padded masks, at least one real token per text row: :func:`check_input_values`) run where batches are
made (training's collate, the sampler).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from model.network.bimamba import BiMamba, check_right_padded, lengths_from_mask
from model.network.conditioning import AdaLNModulation, CrossAttention, TimestepEmbedder, modulate
from model.network.mamba import SCAN_BACKENDS

# The paper's network (a fact of the paper, not a params default): 24 blocks x 512, d_state 16, expand 2, 8 heads;
# profiles/paper.yaml's model section must equal it (tests/model/network/test_backbone.py).
PAPER_NETWORK: dict[str, Any] = {
    "hidden": 512, "depth": 24, "d_state": 16, "d_conv": 4, "expand": 2, "dt_rank": "auto",
    "heads": 8, "mlp_ratio": 2.0, "time_dim": 256, "in_kernel": 3, "scan_backend": "auto", "precondition": False,
}  # fmt: skip
_POSITIVE_INT_KEYS = (
    "latent_dim",
    "text_dim",
    "hidden",
    "depth",
    "d_state",
    "d_conv",
    "expand",
    "heads",
    "time_dim",
)


@dataclass(frozen=True)
class VelocityNetConfig:
    """Sizes of :class:`VelocityNet`: the ``model:`` section of params.yaml plus ``latent_dim``/``text_dim``, which
    come from the codec and the text encoder. No defaults: the params schema holds them. ``dt_rank`` is "auto"
    (ceil(hidden / 16), as mamba_ssm) or an int; ``in_kernel`` is the odd kernel size of the Conv1d in-projection.
    ``scan_backend`` is stored with the weights; a loader may ``dataclasses.replace`` it for the machine at hand.
    """

    latent_dim: int
    text_dim: int
    hidden: int
    depth: int
    d_state: int
    d_conv: int
    expand: int
    dt_rank: int | str
    heads: int
    mlp_ratio: float
    time_dim: int
    in_kernel: int
    scan_backend: str
    precondition: bool

    def __post_init__(self) -> None:
        for key in _POSITIVE_INT_KEYS:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"params.yaml: model.{key} must be a positive integer, got {value!r}")
        if self.hidden % self.heads:
            raise ValueError(
                f"params.yaml: model.hidden={self.hidden} must be divisible by model.heads={self.heads}"
            )
        if self.time_dim % 2:
            raise ValueError(f"params.yaml: model.time_dim must be even (sin/cos pairs), got {self.time_dim}")
        if not (isinstance(self.in_kernel, int) and self.in_kernel >= 1 and self.in_kernel % 2 == 1):
            raise ValueError(
                f"params.yaml: model.in_kernel must be an odd positive integer, got {self.in_kernel!r}"
            )
        if self.dt_rank != "auto" and not (isinstance(self.dt_rank, int) and self.dt_rank >= 1):
            raise ValueError(
                f"params.yaml: model.dt_rank must be 'auto' or a positive integer, got {self.dt_rank!r}"
            )
        if not (isinstance(self.mlp_ratio, int | float) and self.mlp_ratio > 0 and self.mlp_hidden >= 1):
            raise ValueError(
                f"params.yaml: model.mlp_ratio must be a positive number, got {self.mlp_ratio!r}"
            )
        if not isinstance(self.precondition, bool):
            raise ValueError(
                f"params.yaml: model.precondition must be true or false, got {self.precondition!r}"
            )
        if self.scan_backend not in SCAN_BACKENDS:
            raise ValueError(
                f"params.yaml: model.scan_backend must be one of {SCAN_BACKENDS}, got {self.scan_backend!r}"
            )

    @property
    def mlp_hidden(self) -> int:
        return int(round(self.hidden * self.mlp_ratio))

    @classmethod
    def paper(cls) -> VelocityNetConfig:
        """The paper's network: 128-d latents, FLAN-T5-base text (768), 24 blocks x 512; 189,680,256 parameters."""
        return cls(latent_dim=128, text_dim=768, **PAPER_NETWORK)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VelocityNetConfig:
        """Inverse of ``to_dict`` (e.g. ``config.json`` of a trained model); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        # artefacts written before the key existed were trained without preconditioning
        data = {"precondition": False, **data}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"VelocityNetConfig: unknown keys {unknown} (expected a subset of {sorted(names)})"
            )
        return cls(**data)


def count_parameters(net: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters of ``net``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def check_input_values(text_mask: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    """The value checks that :meth:`VelocityNet.forward` leaves to whoever makes a batch (they read tensor
    values, a host sync on a GPU): every text_mask (B, L) row has a real token; mask (B, T), if given, is
    right-padded. Call on CPU tensors where batches are assembled."""
    if not bool(text_mask.any(dim=1).all()):
        raise ValueError("VelocityNet: every text_mask row needs at least one real token (use encode(['']))")
    if mask is not None:
        check_right_padded(mask)


def velocity_preconditioning(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out), each shaped like t (B,), for v = c_skip · x_t + c_out · F on the path x_t = (1 - t)·z + t·x.

    With unit-variance data x (the latents are standardised) and noise z, independent: c_skip is the regression
    coefficient of the target v = x - z on x_t, Cov(v, x_t) / Var(x_t) = (2t - 1) / ((1 - t)² + t²), and c_out the
    standard deviation of what is left, sqrt(2 - (2t - 1)² / ((1 - t)² + t²)), so the network's own target has unit
    variance at every t. At t = 0, v = -x_t + F: the noise is cancelled exactly and F only predicts the data.
    """
    t = t.float()
    var_xt = (1 - t).square() + t.square()
    c_skip = (2 * t - 1) / var_xt
    c_out = (2 - (2 * t - 1).square() / var_xt).clamp_min(0).sqrt()
    return c_skip, c_out


def _xavier(layer: nn.Linear) -> nn.Linear:
    nn.init.xavier_uniform_(layer.weight)  # DiT's init for its own Linear layers
    nn.init.zeros_(layer.bias)
    return layer


class VelocityBlock(nn.Module):
    """adaLN-BiMamba, cross-attention, adaLN-MLP; ``forward(h (B, T, H), c (B, H), text, text_mask, mask)``."""

    def __init__(self, cfg: VelocityNetConfig, layer_idx: int) -> None:
        super().__init__()
        hidden = cfg.hidden
        self.modulation = AdaLNModulation(hidden, chunks=6)
        self.mixer_norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mixer = BiMamba(
            hidden,
            d_state=cfg.d_state,
            d_conv=cfg.d_conv,
            expand=cfg.expand,
            dt_rank=cfg.dt_rank,
            scan_backend=cfg.scan_backend,
            layer_idx=layer_idx,
        )
        self.cross_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.cross_attn = CrossAttention(hidden, cfg.text_dim, cfg.heads)
        self.mlp_norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            _xavier(nn.Linear(hidden, cfg.mlp_hidden)),
            nn.GELU(approximate="tanh"),
            _xavier(nn.Linear(cfg.mlp_hidden, hidden)),
        )

    def forward(
        self,
        h: torch.Tensor,
        c: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        mask: torch.Tensor | None,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)
        h = h + gate1.unsqueeze(1) * self.mixer(modulate(self.mixer_norm(h), shift1, scale1), mask, lengths)
        h = h + self.cross_attn(self.cross_norm(h), text, text_mask)
        h = h + gate2.unsqueeze(1) * self.mlp(modulate(self.mlp_norm(h), shift2, scale2))
        return h if mask is None else h.masked_fill(~mask.unsqueeze(-1), 0.0)


class FinalLayer(nn.Module):
    """h: (B, T, H), c: (B, H) -> (B, T, latent_dim): adaLN (zero-init shift/scale) then Linear."""

    def __init__(self, hidden: int, latent_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.modulation = AdaLNModulation(hidden, chunks=2)
        # Not zero-initialised (DiT zeroes it): with the gates at zero, a zero output layer would leave every
        # block without gradient for the first two steps; this way all parameters learn from the second step.
        self.linear = _xavier(nn.Linear(hidden, latent_dim))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(c)
        return self.linear(modulate(self.norm(h), shift, scale))


class VelocityNet(nn.Module):
    """``forward(x (B, D, T), t (B,), text (B, L, E), text_mask (B, L) bool, mask (B, T) bool | None) -> (B, D, T)``.

    ``mask`` True = valid frame (right padding); None = all frames valid. ``text_mask`` True = real token; every
    row needs at least one (the encoders always keep their special tokens, even for the empty null text).
    Outputs on padded frames are exactly zero. Those two value promises are checked where batches are made
    (:func:`check_input_values`), not here: ``forward`` never syncs with the host.
    """

    def __init__(self, cfg: VelocityNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_proj = nn.Conv1d(cfg.latent_dim, cfg.hidden, cfg.in_kernel, padding=cfg.in_kernel // 2)
        self.time_embed = TimestepEmbedder(cfg.time_dim, cfg.hidden)
        self.blocks = nn.ModuleList(VelocityBlock(cfg, layer_idx=i) for i in range(cfg.depth))
        self.final = FinalLayer(cfg.hidden, cfg.latent_dim)

    def _check_inputs(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> None:
        cfg = self.cfg
        if x.dim() != 3 or x.shape[1] != cfg.latent_dim:
            raise ValueError(
                f"VelocityNet: x must be (batch, latent_dim={cfg.latent_dim}, time), got {tuple(x.shape)}"
            )
        batch, _, frames = x.shape
        if t.shape != (batch,):
            raise ValueError(f"VelocityNet: t must be ({batch},), got {tuple(t.shape)}")
        if text.dim() != 3 or text.shape[0] != batch or text.shape[2] != cfg.text_dim:
            raise ValueError(
                f"VelocityNet: text must be ({batch}, tokens, text_dim={cfg.text_dim}), got {tuple(text.shape)}; "
                "text_dim must match the text encoder the network was built for"
            )
        if text_mask.dtype != torch.bool or text_mask.shape != text.shape[:2]:
            raise ValueError(
                f"VelocityNet: text_mask must be a bool {tuple(text.shape[:2])} tensor, "
                f"got {text_mask.dtype} {tuple(text_mask.shape)}"
            )
        if mask is not None and (mask.dtype != torch.bool or mask.shape != (batch, frames)):
            raise ValueError(
                f"VelocityNet: mask must be a bool ({batch}, {frames}) tensor, got {mask.dtype} {tuple(mask.shape)}"
            )

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check_inputs(x, t, text, text_mask, mask)
        pads = None if mask is None else ~mask.unsqueeze(-1)  # (B, T, 1)
        if pads is not None:
            # masked_fill, not a product: NaN/inf in padded frames must not survive; the conv then sees the
            # same zeros past the end of a clip whatever the amount of padding.
            x = x.masked_fill(pads.transpose(1, 2), 0.0)
        h = self.in_proj(x).transpose(1, 2)  # (B, T, hidden)
        if pads is not None:
            h = h.masked_fill(pads, 0.0)
        c = self.time_embed(t)
        text = text.to(h.dtype)
        lengths = None if mask is None else lengths_from_mask(mask)  # once per batch, on the device
        for block in self.blocks:
            h = block(h, c, text, text_mask, mask, lengths)
        v = self.final(h, c).transpose(1, 2)  # (B, D, T)
        if self.cfg.precondition:
            c_skip, c_out = velocity_preconditioning(t)
            v = c_skip[:, None, None].to(v.dtype) * x.to(v.dtype) + c_out[:, None, None].to(v.dtype) * v
        if pads is not None:
            v = v.masked_fill(pads.transpose(1, 2), 0.0)
        return v
