"""Length-aware bidirectional Mamba: a forward mixer and an independent one on the time-reversed sequence.

    y = out_proj([mamba_fwd(x) ; R(mamba_rev(R(x)))])          (concatenated on features, Linear 2D -> D)

R reverses each sequence within its own valid length, so with right padding the pads stay at the end in both
directions; padded input frames are zeroed first. The conv1d and the scan are causal, so frames after the valid
ones (the pads) can never reach a valid frame in either direction. Padded output frames are set to zero.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from model.network.mamba import Mamba, ScanBackend


def _check_mask_type(mask: torch.Tensor) -> None:
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(
            f"BiMamba: mask must be a (batch, time) bool tensor, got {tuple(mask.shape)} {mask.dtype}"
        )


def lengths_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """mask: (B, T) bool, True = valid, right padding -> lengths (B,) int64, on the mask's device, without
    reading any value back to the host (a right-padded mask is the caller's promise: :func:`check_right_padded`)."""
    _check_mask_type(mask)
    return mask.sum(dim=1)


def check_right_padded(mask: torch.Tensor) -> None:
    """Raise ValueError unless mask (B, T) bool is right-padded (True for the first n frames of each row, then
    False). Reads the mask's values: call it where a batch is made (on CPU), not inside a forward."""
    _check_mask_type(mask)
    positions = torch.arange(mask.shape[1], device=mask.device)
    if not torch.equal(mask, positions[None, :] < mask.sum(dim=1)[:, None]):
        raise ValueError(
            "BiMamba: mask must be right-padded (True for the first n_frames of each row, then False); "
            "pad sequences at the end, not the start or the middle"
        )


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse x: (B, T, ...) along T inside each row's first lengths[b] frames; later frames stay in place.

    The permutation is its own inverse, so applying it twice gives x back.
    """
    time = x.shape[1]
    positions = torch.arange(time, device=x.device)[None, :]
    source = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)  # (B, T)
    index = source.reshape(*source.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, index)


class BiMamba(nn.Module):
    """Bidirectional Mamba layer: ``forward(x (B, T, D), mask (B, T) bool | None) -> (B, T, D)``.

    Submodules: ``mamba_fwd`` and ``mamba_rev`` (two independent ``model.network.mamba.Mamba`` mixers with mamba_ssm's
    parameter names) and ``out_proj`` (Linear 2*d_model -> d_model, with bias). Extra keyword arguments go to
    both mixers (dt_min, dt_max, dt_init, dt_scale, dt_init_floor, conv_bias, bias, scan_method, chunk_size,
    device, dtype).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | Literal["auto"] = "auto",
        scan_backend: ScanBackend = "auto",
        layer_idx: int | None = None,
        **mamba_kwargs: Any,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.layer_idx = layer_idx
        mixer_args = dict(
            d_model=d_model,
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            dt_rank=dt_rank,
            scan_backend=scan_backend,
            layer_idx=layer_idx,
            **mamba_kwargs,
        )
        self.mamba_fwd = Mamba(**mixer_args)
        self.mamba_rev = Mamba(**mixer_args)
        factory = {key: mamba_kwargs[key] for key in ("device", "dtype") if key in mamba_kwargs}
        self.out_proj = nn.Linear(2 * d_model, d_model, **factory)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: (B, T, D); mask: (B, T) bool, True = valid frame, right padding -> (B, T, D), zero on pads.

        ``lengths`` (B,) = ``mask.sum(1)`` when the caller has it (computed once per batch, not per layer);
        without it the mask is also checked to be right-padded (a host sync: fine for a standalone call).
        """
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"BiMamba: expected x (batch, time, d_model={self.d_model}), got {tuple(x.shape)}"
            )
        if mask is None:
            forward_out = self.mamba_fwd(x)
            reverse_out = self.mamba_rev(x.flip(1)).flip(1)
            return self.out_proj(torch.cat([forward_out, reverse_out], dim=-1))
        if mask.shape != x.shape[:2]:
            raise ValueError(
                f"BiMamba: mask shape {tuple(mask.shape)} must be (batch, time) = {tuple(x.shape[:2])}"
            )
        if lengths is None:
            check_right_padded(mask)
            lengths = lengths_from_mask(mask)
        padded = ~mask.unsqueeze(-1)
        x = x.masked_fill(padded, 0.0)  # masked_fill, not a product: NaN/inf in pads must not survive as NaN
        forward_out = self.mamba_fwd(x)
        reverse_out = reverse_within_length(self.mamba_rev(reverse_within_length(x, lengths)), lengths)
        return self.out_proj(torch.cat([forward_out, reverse_out], dim=-1)).masked_fill(padded, 0.0)
