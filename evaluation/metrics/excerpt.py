"""The scored excerpt of the challenge: only the first 10 s of each clip are scored.

Shared by every audio embedder (:mod:`evaluation.metrics.embedders`, :mod:`evaluation.metrics.clap_model`).
"""

from __future__ import annotations

import logging

import numpy as np

from model.audio.io import crop_or_pad, resample

log = logging.getLogger(__name__)

SCORED_SECONDS = 10.0


def scored_excerpt(
    audio: np.ndarray, sample_rate: int, target_rate: int, seconds: float = SCORED_SECONDS
) -> np.ndarray:
    """The first ``seconds`` of (C, N) audio resampled to ``target_rate``, zero-padded if shorter -> (C, S)."""
    if audio.ndim != 2:
        raise ValueError(f"audio must be (C, N), got shape {audio.shape}")
    head = audio[:, : int(round(seconds * sample_rate))]
    head = resample(np.ascontiguousarray(head, np.float32), sample_rate, target_rate)
    n = int(round(seconds * target_rate))
    if head.shape[1] < n:
        log.debug("audio shorter than %.1f s (%d samples); zero-padding", seconds, head.shape[1])
    return crop_or_pad(head, n)


def scored_head(
    audio: np.ndarray, sample_rate: int, target_rate: int, seconds: float = SCORED_SECONDS
) -> np.ndarray:
    """The first ``seconds`` of (C, N) audio resampled to ``target_rate``, NOT padded -> (C, S <= seconds·rate)."""
    if audio.ndim != 2:
        raise ValueError(f"audio must be (C, N), got shape {audio.shape}")
    head = audio[:, : int(round(seconds * sample_rate))]
    head = resample(np.ascontiguousarray(head, np.float32), sample_rate, target_rate)
    return head[:, : int(round(seconds * target_rate))]
