"""Sampling precision (``generate.precision``): what the generate stage, the single-prompt CLI and
``bench/gpu_check.py`` run the velocity net under, from one function.

- ``fp32``: weights and activations in fp32; on a CUDA device TF32 is allowed for fp32 matmuls
  (``torch.backends.cuda.matmul.allow_tf32``, restored afterwards), as bf16-era GPUs do by default in most
  frameworks: 10-bit-mantissa products with fp32 accumulation. No effect on CPU.
- ``bf16``: ``torch.autocast(device, bfloat16)`` around the sampler, as training's steps run on CUDA; the
  weights stay fp32 and the scans keep an fp32 state. Allowed on CPU too (torch's CPU autocast): measured here
  on a 2-core x86 CPU with AVX512-BF16, the embedded network sampled 16 % faster than fp32 (median of 3); a CPU
  without native bf16 may be slower.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


def check_precision(precision: str, key: str = "generate.precision") -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError naming ``key``."""
    if precision not in PRECISIONS:
        raise ValueError(f"params.yaml: {key} = {precision!r}: must be one of {', '.join(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def sampling_precision(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the block in ``precision`` on ``device`` (module docstring); restores every global it changes."""
    device = torch.device(device)
    check_precision(precision)
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
        return
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
