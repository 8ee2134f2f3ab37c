"""Batches of text tokens: token embeddings right-padded with zeros and their masks with False, the one padding
that training batches, condition dropout and classifier-free guidance all use."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def pad_tokens(emb: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (B, L, E) tokens and their (B, L) bool mask to ``length`` tokens (unchanged when L >= length)."""
    extra = length - emb.shape[1]
    if extra <= 0:
        return emb, mask
    return F.pad(emb, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)


def stack_tokens(tokens: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A list of (L_i, E) real tokens -> (emb (B, L, E), mask (B, L) bool) with L the longest."""
    length = max(t.shape[0] for t in tokens)
    padded = [
        pad_tokens(t[None], torch.ones(1, t.shape[0], dtype=torch.bool, device=t.device), length)
        for t in tokens
    ]
    return torch.cat([e for e, _ in padded]), torch.cat([m for _, m in padded])
