"""Numerics of the offline evaluation models that do not depend on the CPU's instruction set.

The offline tagger and local-clap are trained by the evaluate stage (600 / 500 AdamW steps). Those trainings
amplify last-bit differences about 10^4-fold: a 1e-7 relative change of their inputs moved the validation cosine
of local-clap by 9e-4. Measured on one machine by switching kernel paths (docs/evaluation.md, "Reproducibility"):
float32 results change with ATen's CPU capability (AVX512 / AVX2) and with oneDNN's ISA, which runs float32
``Linear`` layers; threads (1 vs 2), MKL's and OpenBLAS's ISA and numpy's SIMD change nothing here. So:

- the trainings and their inference run in float64 (:data:`TRAIN_DTYPE`; the nets are tiny), where the
  AVX512 / AVX2 difference stays at ~1e-12 instead of 1e-3;
- the MiniLM caption features for local-clap are computed with oneDNN off (:func:`portable_kernels`), which
  made them bit-identical across the AVX512 / AVX2 / oneDNN-AVX2 paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

TRAIN_DTYPE = torch.float64


@contextmanager
def portable_kernels() -> Iterator[None]:
    """oneDNN off inside the block: float32 matmuls take the path whose results did not change with the ISA."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous
