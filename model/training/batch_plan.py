"""Per-device batch for the paper recipe: the same 64 clips per update on any card, in as few micro-batches as the
card's memory allows (``batch_size`` × ``accum_steps`` = 64, ``batch_size`` as large as fits, at most 64).

The memory model is the estimate of docs/gpu.md (``bench/bench_memory.py``: saved-tensor accounting of one
training forward of the 189.7M network at 323 frames under bf16 autocast, with the torch scan, the largest of
the scan backends' figures, so the plan holds for every backend): a step holds :data:`FIXED_GIB` once (fp32
weights, gradients, AdamW moments and the EMA copy, plus the bf16 weight copies of autocast) and
:data:`PER_SAMPLE_GIB` per 323-frame clip; :data:`RESERVE` of the card stays free for the CUDA context, the
allocator's fragmentation and the backward's transient buffers. ``bench/gpu_check.py`` measures the largest batch
that really fits.

    card memory   batch_size × accum_steps
    24 GiB        16 × 4
    48 GiB        32 × 2
    80 GiB        64 × 1
    141 GiB       64 × 1      (one micro-batch already holds the whole update)

Torch-free arithmetic (it imports only ``model.runtime.errors``), so the bare-machine device check can import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.runtime.errors import InputError

EFFECTIVE_BATCH = 64  # clips per update in the paper profile (16 × 4 on the paper's 24 GB A5000)
FRAMES = 323  # the paper's 30 s crop, which the per-sample figure is for
FIXED_GIB = 3.53 + 0.32  # fp32 weights, grads, AdamW moments, EMA (3.53 GiB) + bf16 weight copies (326 MiB)
PER_SAMPLE_GIB = 0.69  # bf16 autocast, torch scan: 2.17 MiB per frame x 323 frames
RESERVE = 0.15
TABLE_GIB = (24, 48, 80, 141)


@dataclass(frozen=True)
class BatchPlan:
    """``batch_size`` clips per micro-batch, ``accum_steps`` micro-batches per update, and the estimate."""

    batch_size: int
    accum_steps: int
    estimated_peak_gib: float
    memory_gib: float

    @property
    def effective(self) -> int:
        return self.batch_size * self.accum_steps


def estimated_peak_gib(batch_size: int) -> float:
    """The step's estimated peak memory at ``batch_size`` clips of 323 frames (module docstring)."""
    return FIXED_GIB + batch_size * PER_SAMPLE_GIB


def plan_batch(memory_gib: float, effective: int = EFFECTIVE_BATCH) -> BatchPlan:
    """The largest ``batch_size`` that divides ``effective`` and whose estimate fits (1 - RESERVE) of
    ``memory_gib``; ``accum_steps`` makes up the rest. An InputError when not even one clip fits."""
    usable = (1.0 - RESERVE) * memory_gib
    for batch in sorted((b for b in range(1, effective + 1) if effective % b == 0), reverse=True):
        if estimated_peak_gib(batch) <= usable:
            return BatchPlan(batch, effective // batch, estimated_peak_gib(batch), memory_gib)
    raise InputError(
        f"a {memory_gib:.1f} GiB card does not fit one 323-frame clip of the paper network in bf16 "
        f"(estimated {estimated_peak_gib(1):.1f} GiB with {RESERVE:.0%} kept free)"
    )


def table() -> list[BatchPlan]:
    """The plan for the documented card sizes (:data:`TABLE_GIB`)."""
    return [plan_batch(gib) for gib in TABLE_GIB]
