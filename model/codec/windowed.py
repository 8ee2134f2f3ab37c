"""Decode long latents in overlapping windows, so decoder memory stays bounded whatever the length.

A codec whose decoder memory grows with the number of frames (a convolutional decoder, e.g. ACE-Step's DCAE) sets
``decode_window`` (frames per window) and ``decode_overlap`` (frames shared by neighbouring windows). Windows start
every ``window − overlap`` frames; each is decoded alone and neighbours are joined with a raised-cosine crossfade
over the overlap, so every output sample is a convex mix of at most two window decodes::

    frames   |------ window 0 ------|
                          |------ window 1 ------|
    weight   1 ... 1 ╲___ ramp ___╱ 1 ... 1            (overlap · samples_per_frame samples)

A codec without ``decode_window`` (the mel codec: Griffin-Lim's memory is a few STFT copies, linear in length,
and per-window phase would add seams) is decoded in one call.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

log = logging.getLogger(__name__)


def window_starts(n_frames: int, window: int, overlap: int) -> list[int]:
    """First frame of each window covering ``n_frames``; the last window ends exactly at ``n_frames``."""
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(
            f"decode windows need window >= 1 and 0 <= overlap < window, got {window}, {overlap}"
        )
    if n_frames <= window:
        return [0]
    stride = window - overlap
    count = math.ceil((n_frames - window) / stride) + 1
    return [min(i * stride, n_frames - window) for i in range(count)]


def decode_windowed(codec: Any, z: torch.Tensor, window: int, overlap: int) -> torch.Tensor:
    """z: (B, D, T) -> (B, C, T · samples_per_frame), decoding ``window`` frames at a time with crossfades."""
    n_frames = z.shape[-1]
    starts = window_starts(n_frames, window, overlap)
    if len(starts) == 1:
        return codec.decode(z)
    out = weight = None
    spf = 0
    for start in starts:
        piece = codec.decode(z[..., start : start + window])
        if out is None:
            spf = piece.shape[-1] // window
            out = piece.new_zeros((*piece.shape[:-1], n_frames * spf))
            weight = piece.new_zeros(n_frames * spf)
        w = _ramps(window * spf, overlap * spf, first=start == 0, last=start + window == n_frames, like=piece)
        a = start * spf
        out[..., a : a + window * spf] += piece[..., : window * spf] * w
        weight[a : a + window * spf] += w
    log.debug("decoded %d frames in %d windows of %d (overlap %d)", n_frames, len(starts), window, overlap)
    return out / weight.clamp_min(1e-12)


def _ramps(length: int, fade: int, first: bool, last: bool, like: torch.Tensor) -> torch.Tensor:
    """(length,) weights: raised-cosine fade-in over ``fade`` samples unless first, fade-out unless last."""
    w = like.new_ones(length)
    if fade > 0:
        ramp = 0.5 - 0.5 * torch.cos(torch.linspace(0, math.pi, fade + 2, device=like.device)[1:-1]).to(
            like.dtype
        )
        if not first:
            w[:fade] = ramp
        if not last:
            w[-fade:] = ramp.flip(0)
    return w


def decode_long(codec: Any, z: torch.Tensor) -> torch.Tensor:
    """Decode (B, D, T) with the codec's own ``decode_window``/``decode_overlap`` when it has them, else at once."""
    window = getattr(codec, "decode_window", None)
    if window and z.shape[-1] > window:
        return decode_windowed(codec, z, int(window), int(getattr(codec, "decode_overlap", 0)))
    return codec.decode(z)
