"""How the velocity network is conditioned: the timestep through DiT-style adaLN, the text through cross-attention.

- ``sinusoidal_embedding``: t in [0, 1] -> (B, time_dim) sin/cos features of ``1000 * t`` (the scale DiT's
  integer timesteps had, so the 10000-period frequency ladder still resolves small changes of t).
- ``TimestepEmbedder``: sinusoid -> Linear -> SiLU -> Linear, a (B, hidden) conditioning vector c.
- ``AdaLNModulation``: SiLU(c) -> Linear(hidden -> n * hidden), split into n (B, hidden) chunks (shift, scale,
  gate, ...); zero-initialised as in DiT, so every modulated sub-layer starts as the identity (gate 0) and every
  adaLN norm as a plain LayerNorm (shift 0, scale 0 in ``x * (1 + scale) + shift``).
- ``CrossAttention``: queries from the latent frames, keys/values from the text tokens (projected from text_dim),
  a key padding mask from the encoder; the output projection is zero-initialised, so at initialisation the text
  branch adds nothing and the network starts as in-projection -> final layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TIMESTEP_SCALE = 1000.0


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """t: (B,) in [0, 1] -> (B, dim) [cos | sin] of ``TIMESTEP_SCALE * t * freq_k``, freq_k = max_period^(-k/half)."""
    if dim % 2:
        raise ValueError(f"sinusoidal_embedding: dim must be even, got {dim}")
    half = dim // 2
    dtype = t.dtype if t.is_floating_point() else torch.float32
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / half)
    args = TIMESTEP_SCALE * t.to(dtype)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """t: (B,) -> c: (B, hidden) via a 2-layer MLP on the ``time_dim`` sinusoidal features."""

    def __init__(self, time_dim: int, hidden: int) -> None:
        super().__init__()
        self.time_dim = time_dim
        self.mlp = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)  # DiT's timestep-MLP init
            nn.init.zeros_(layer.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        features = sinusoidal_embedding(t, self.time_dim).to(self.mlp[0].weight.dtype)
        return self.mlp(features)


class AdaLNModulation(nn.Module):
    """c: (B, hidden) -> n chunks of (B, hidden); zero-initialised (identity sub-layers at initialisation)."""

    def __init__(self, hidden: int, chunks: int) -> None:
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(hidden, chunks * hidden)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(F.silu(c)).chunk(self.chunks, dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x: (B, T, H), shift/scale: (B, H) -> x * (1 + scale) + shift, broadcast over T."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class CrossAttention(nn.Module):
    """Multi-head attention from latent frames to text tokens.

    ``forward(x (B, T, H), text (B, L, E), text_mask (B, L) bool, True = real token) -> (B, T, H)``. Each frame
    attends only to text tokens (never to other frames), so it is per-frame and cannot mix padded and valid
    frames; masked text tokens get exactly zero attention weight.
    """

    def __init__(self, hidden: int, text_dim: int, heads: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"CrossAttention: hidden={hidden} must be divisible by heads={heads}")
        self.heads = heads
        self.to_q = nn.Linear(hidden, hidden)
        self.to_k = nn.Linear(text_dim, hidden)
        self.to_v = nn.Linear(text_dim, hidden)
        self.to_out = nn.Linear(hidden, hidden)
        for layer in (self.to_q, self.to_k, self.to_v):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.to_out.weight)  # the text branch starts switched off (see module docstring)
        nn.init.zeros_(self.to_out.bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, -1).transpose(1, 2)  # (B, heads, length, head_dim)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        q = self._split_heads(self.to_q(x))
        k = self._split_heads(self.to_k(text))
        v = self._split_heads(self.to_v(text))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=text_mask[:, None, None, :])
        batch, _, frames, _ = attended.shape
        return self.to_out(attended.transpose(1, 2).reshape(batch, frames, -1))
