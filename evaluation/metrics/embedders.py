"""Audio embedders for FAD behind one interface: ``embed(audio (C, N) at sr) -> (W, E)`` per-window embeddings.

Only the first ``SCORED_SECONDS`` (10 s) of each file are scored, as in the challenge. Two embedders:

- ``clap``: LAION-CLAP ``music_audioset_epoch_15_esc_90.14.pt`` as fadtk's ``clap-laion-music`` (48 kHz
  mono, 10 s windows at a 1 s hop, zero-padded, int16-quantised, 512-d), see ``evaluation/metrics/clap_model.py``.
- ``spectral``: ``spectral-stats-v1 (weight-free; not CLAP)``, the offline default: one hand-made descriptor
  (``evaluation/metrics/spectral_features.py``) per 10 s window. Its FAD values are NOT comparable to CLAP FAD.

``build_embedder(name, clap)`` picks one by ``evaluate.embedder``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from evaluation.metrics import spectral_features
from evaluation.metrics.excerpt import SCORED_SECONDS, scored_excerpt

log = logging.getLogger(__name__)

EMBEDDER_NAMES = ("spectral", "clap")


@runtime_checkable
class AudioEmbedder(Protocol):
    """What FAD, best-of-N and the offline text/concept models rely on."""

    name: str
    sample_rate: int
    dim: int

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """audio (C, N) float32 at ``sample_rate`` -> (W, E) float64 embeddings of its first 10 s."""
        ...

    def settings(self) -> dict[str, Any]:
        """JSON-able description (reference-cache key and metrics provenance)."""
        ...


class SpectralStatsEmbedder:
    """Weight-free offline embedder: one ``spectral_features`` descriptor per 10 s window (W = 1)."""

    name = "spectral-stats-v1 (weight-free; not CLAP)"
    sample_rate = spectral_features.SAMPLE_RATE
    dim = spectral_features.DIM

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        head = audio[:, : int(round(SCORED_SECONDS * sample_rate))]
        width = spectral_features.stereo_width(head)
        mono = scored_excerpt(head.mean(axis=0, keepdims=True), sample_rate, self.sample_rate)[0]
        return spectral_features.clip_descriptor(mono, width, self.sample_rate)[None, :]

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sample_rate": self.sample_rate,
            "scored_seconds": SCORED_SECONDS,
            "n_fft": spectral_features.N_FFT,
            "hop": spectral_features.HOP,
            "n_mels": spectral_features.N_MELS,
            "dim": self.dim,
            # a changed descriptor must never reuse cached reference statistics
            "code_sha256": hashlib.sha256(Path(spectral_features.__file__).read_bytes()).hexdigest(),
        }


@dataclass(frozen=True)
class ClapOptions:
    """``evaluate.clap_path``, ``clap_tokenizer_path``, ``clap_batch_size`` and ``clap_hop_seconds``."""

    path: str
    tokenizer_path: str
    batch_size: int
    hop_seconds: float


def build_embedder(name: str, clap: ClapOptions | None = None) -> AudioEmbedder:
    """``evaluate.embedder``: ``spectral`` (offline default) or ``clap`` (built from ``clap``)."""
    if name == "spectral":
        return SpectralStatsEmbedder()
    if name == "clap":
        from evaluation.metrics.clap_model import ClapEmbedder, load_clap

        if clap is None:
            raise ValueError("evaluate.embedder clap needs the evaluate.clap_* settings")
        bundle = load_clap(clap.path, clap.tokenizer_path)
        return ClapEmbedder(bundle, batch_size=clap.batch_size, hop_seconds=clap.hop_seconds)
    raise ValueError(
        f"params.yaml: evaluate.embedder is {name!r}; expected one of {', '.join(EMBEDDER_NAMES)}"
    )
