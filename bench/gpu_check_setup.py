"""The sizes and inputs that every check of ``bench/gpu_check.py`` shares: paper size on a GPU, tiny on a dry run."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.network.backbone import VelocityNetConfig  # noqa: E402

FRAME_RATE = 44100 / 4096  # ACE-Step DCAE latent frames per second
TEXT_TOKENS = 32


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Everything that differs between the real check and the CPU dry run."""

    net: VelocityNetConfig
    batch: int
    frames: int
    steps: int  # timed training steps per backend
    gen_frames: int
    gen_steps: tuple[int, ...]
    scan: tuple[int, int, int, int]  # batch, d_inner, length, d_state
    audio_seconds: float


def sizes_for(dry_run: bool) -> Sizes:
    if dry_run:
        tiny = VelocityNetConfig(
            latent_dim=8,
            text_dim=16,
            hidden=16,
            depth=1,
            d_state=4,
            d_conv=4,
            expand=1,
            heads=2,
            mlp_ratio=1.0,
            time_dim=8,
            dt_rank="auto",
            in_kernel=3,
            scan_backend="auto",
        )
        return Sizes(
            tiny,
            batch=2,
            frames=12,
            steps=2,
            gen_frames=8,
            gen_steps=(2, 1),
            scan=(1, 8, 20, 4),
            audio_seconds=1.0,
        )
    return Sizes(
        VelocityNetConfig.paper(),
        batch=16,
        frames=323,
        steps=10,
        gen_frames=round(10 * FRAME_RATE),
        gen_steps=(100, 25),
        scan=(2, 1024, 323, 16),
        audio_seconds=30.0,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _text(batch: int, cfg: VelocityNetConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return (
        torch.randn(batch, TEXT_TOKENS, cfg.text_dim, generator=gen).to(device),
        torch.ones(batch, TEXT_TOKENS, dtype=torch.bool, device=device),
    )


def _null(text: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 1, E) null condition in fresh contiguous storage (a clone of a slice keeps the slice's strides,
    which DDP's coalesced broadcast of the buffers refuses)."""
    return (
        text[:1, :1].clone(memory_format=torch.contiguous_format),
        text_mask[:1, :1].clone(memory_format=torch.contiguous_format),
    )
