"""A set of audio files embedded once for every metric: FAD windows, judge descriptors and CLAP vectors.

``Embedders`` names the three embedders the settings ask for (one CLAP model shared by all its uses);
``embed_set(paths, embedders, label)`` decodes each file once and returns an :class:`EmbeddedSet` of the readable
ones, plus the rejects (path, reason) of the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluation.metrics.audio_sets import embed_paths
from evaluation.metrics.embedders import AudioEmbedder, ClapOptions, SpectralStatsEmbedder, build_embedder
from evaluation.metrics.excerpt import SCORED_SECONDS
from evaluation.metrics.spectral_features import judge_features
from evaluation.scoring.settings import EvaluateSettings

Transform = Callable[[np.ndarray, int], tuple[np.ndarray, int]]
Reader = Callable[[str], tuple[np.ndarray, int]]


@dataclass(frozen=True)
class Embedders:
    """The FAD embedder, the descriptor embedder of the offline models (or None) and the CLAP embedder (or None);
    one object may play several roles."""

    fad: AudioEmbedder
    descriptor: AudioEmbedder | None
    clap: Any | None

    @classmethod
    def for_settings(cls, settings: EvaluateSettings) -> Embedders:
        options = ClapOptions(
            settings.clap_path,
            settings.clap_tokenizer_path,
            settings.clap_batch_size,
            settings.clap_hop_seconds,
        )
        clap = build_embedder("clap", options) if settings.needs_clap else None
        fad = clap if settings.embedder == "clap" else build_embedder(settings.embedder)
        descriptor = None
        if settings.needs_descriptors:
            descriptor = fad if isinstance(fad, SpectralStatsEmbedder) else SpectralStatsEmbedder()
        return cls(fad, descriptor, clap)

    def all(self) -> tuple[Any, Any, Any]:
        return self.fad, self.descriptor, self.clap


@dataclass(frozen=True)
class EmbeddedSet:
    """The readable files of a set: ``keep`` (B,) their indices among the paths given, ``paths`` (B,), ``windows``
    the FAD embeddings of each, (W_i, E); ``descriptors`` (B, F) for the offline models and ``clap`` (B, E) (the
    first 10 s window), each None when no embedder of that kind is used."""

    keep: np.ndarray
    paths: np.ndarray
    windows: list[np.ndarray]
    descriptors: np.ndarray | None
    clap: np.ndarray | None

    def __len__(self) -> int:
        return len(self.keep)

    def input_for(self, kind: str) -> np.ndarray | None:
        """What a scorer or judge of ``input_kind`` reads: ``descriptor``, ``clap`` or ``path``."""
        return {"descriptor": self.descriptors, "clap": self.clap, "path": self.paths}[kind]

    def to_arrays(self, dim: int) -> dict[str, np.ndarray]:
        """As plain arrays (the ceiling cache's format)."""
        out = {
            "keep": np.asarray(self.keep, np.int64),
            "lengths": np.array([len(w) for w in self.windows], np.int64),
            "windows": np.concatenate(self.windows) if self.windows else np.zeros((0, dim)),
        }
        if self.descriptors is not None:
            out["descriptors"] = self.descriptors
        if self.clap is not None:
            out["clap"] = self.clap
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> EmbeddedSet:
        """Inverse of :meth:`to_arrays` (paths are not cached: a cached set is never judged by file)."""
        bounds = np.cumsum(arrays["lengths"])[:-1] if len(arrays["lengths"]) else []
        windows = np.split(arrays["windows"], bounds) if len(arrays["lengths"]) else []
        keep = arrays["keep"]
        return cls(keep, np.array([""] * len(keep)), windows, arrays.get("descriptors"), arrays.get("clap"))


def embed_set(
    paths: Sequence[str],
    embedders: Embedders,
    label: str,
    transform: Transform | None = None,
    reader: Reader | None = None,
) -> tuple[EmbeddedSet, list[dict[str, str]]]:
    """Decode each path once (the first 10 s, or ``reader(path)``: the packaged clip), optionally ``transform`` it
    (a codec round trip), and run the embedders."""
    fad, descriptor, clap = embedders.all()
    fns = {"fad": fad.embed}
    if descriptor is not None and descriptor is not fad:
        fns["descriptor"] = descriptor.embed
    if clap is not None and clap is not fad:
        fns["clap"] = clap.embed
    embedded, rejects = embed_paths(list(paths), fns, SCORED_SECONDS, label, transform, reader)
    embedded.setdefault("descriptor", embedded["fad"] if descriptor is fad else [None] * len(paths))
    embedded.setdefault("clap", embedded["fad"] if clap is fad else [None] * len(paths))
    keep = [i for i, e in enumerate(embedded["fad"]) if e is not None]
    descriptors = (
        judge_features(np.stack([embedded["descriptor"][i].mean(axis=0) for i in keep]))
        if descriptor is not None and keep
        else None
    )
    clap_audio = np.stack([embedded["clap"][i][0] for i in keep]) if clap is not None and keep else None
    return (
        EmbeddedSet(
            np.asarray(keep, np.int64),
            np.array([str(paths[i]) for i in keep]),
            [embedded["fad"][i] for i in keep],
            descriptors,
            clap_audio,
        ),
        rejects,
    )
