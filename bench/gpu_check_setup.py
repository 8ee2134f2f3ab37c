"""What every section of ``bench/gpu_check.py`` shares: sizes (paper size on a GPU, tiny on a dry run), the two
generation settings it times, inputs, and the versions of the machine.

Runs with a bare GPU machine's Python: imports torch, the standard library and flowjam's ``model.network`` (torch
only); triton, mamba_ssm and causal-conv1d are read when present.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import platform
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.network.backbone import VelocityNetConfig  # noqa: E402

FRAME_RATE = 44100 / 4096  # ACE-Step DCAE latent frames per second
TEXT_TOKENS = 32


@dataclasses.dataclass(frozen=True)
class GenerateRun:
    """One generation setting as the generate stage runs it (``generate.method/steps/cfg_scale/precision``)."""

    method: str
    steps: int
    cfg_scale: float
    precision: str


# what the generate stage runs: the paper profile's generate section and the params schema's defaults
# (tests/bench/test_gpu_check.py checks both against profiles/paper.yaml and pipelines/common/schema.py)
PAPER_GENERATE = GenerateRun("euler", 100, 3.5, "bf16")
DEFAULT_GENERATE = GenerateRun("euler", 16, 1.5, "fp32")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Everything that differs between the real check and the CPU dry run."""

    net: VelocityNetConfig
    batch: int
    frames: int
    warmup: int  # untimed training steps per backend (JIT compile, probes, allocator)
    steps: int  # timed training steps per backend
    gen_frames: int
    generate: dict[str, GenerateRun]
    scan: tuple[int, int, int, int]  # batch, d_inner, length, d_state
    audio_seconds: float
    max_batch: int  # the largest batch the search tries
    fake_capacity: int | None  # dry run: clips that "fit" (no OOM on CPU), so the search logic runs


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
            precondition=False,
        )
        runs = {
            "paper": dataclasses.replace(PAPER_GENERATE, steps=3),
            "default": dataclasses.replace(DEFAULT_GENERATE, steps=2),
        }
        return Sizes(tiny, 2, 12, 1, 1, 8, runs, (1, 8, 20, 4), 1.0, max_batch=16, fake_capacity=6)
    return Sizes(
        VelocityNetConfig.paper(),
        batch=16,
        frames=323,
        warmup=2,
        steps=8,
        gen_frames=round(10 * FRAME_RATE),
        generate={"paper": PAPER_GENERATE, "default": DEFAULT_GENERATE},
        scan=(2, 1024, 323, 16),
        audio_seconds=30.0,
        max_batch=512,
        fake_capacity=None,
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


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(device: torch.device) -> dict[str, Any]:
    """The machine: device, torch, CUDA, cuDNN, Triton, mamba_ssm and causal-conv1d versions, memory."""
    try:
        triton = importlib.import_module("triton").__version__
    except Exception as error:  # not installed, or broken
        triton = f"not importable ({type(error).__name__}: {error})"
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": triton,
        "mamba_ssm": _version("mamba-ssm") or _version("mamba_ssm"),
        "causal_conv1d": _version("causal-conv1d") or _version("causal_conv1d"),
        "gpus": torch.cuda.device_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(
            device=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=props.total_memory / 2**30,
        )
    else:
        facts.update(device="cpu", capability=None, memory_gib=None)
    return facts
