"""Text–audio score ("CLAP score"): mean cosine between a clip's audio embedding and its prompt's text embedding.

Two scorers behind one interface (``audio_vectors``, ``text_vectors``, both L2-normalised (B, P)):

- ``clap``: :class:`ClapTextAudio`, LAION-CLAP music with the same checkpoint as FAD; the audio vector is
  the embedding of the first window (the whole scored 10 s).
- ``local``: :class:`LocalClap`, ``local-clap (trained on the train split; not LAION-CLAP)``: a small
  contrastive projection trained by the evaluate stage — audio: weight-free descriptors
  (``evaluation/metrics/spectral_features.py``); text: all-MiniLM-L6-v2 token embeddings, mean-pooled. Its numbers
  are only comparable with other runs of itself, never with published CLAP scores. Trained and run in
  float64, its captions pooled with oneDNN off, so it does not depend on the CPU's instruction set
  (:mod:`evaluation.metrics.portable_numerics`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from evaluation.metrics.portable_numerics import TRAIN_DTYPE, portable_kernels
from model.runtime.atomic_io import write_torch_atomic

log = logging.getLogger(__name__)

LOCAL_CLAP_NAME = "local-clap (trained on the train split; not LAION-CLAP)"


@runtime_checkable
class TextAudioScorer(Protocol):
    name: str
    input_kind: str  # "descriptor" or "clap"

    def audio_vectors(self, audio: np.ndarray) -> np.ndarray:
        """(B, D) audio representation -> (B, P) unit vectors."""
        ...

    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """B texts -> (B, P) unit vectors."""
        ...


def text_audio_scores(scorer: TextAudioScorer, audio: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Cosine of each clip (row of ``audio``) with its text -> (B,)."""
    a, t = scorer.audio_vectors(audio), scorer.text_vectors(list(texts))
    return np.einsum("bp,bp->b", a, t)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


class ClapTextAudio:
    input_kind = "clap"

    def __init__(self, embedder: Any):
        self.embedder = embedder
        self.name = f"clap text-audio cosine ({embedder.name})"

    def audio_vectors(self, audio: np.ndarray) -> np.ndarray:
        return _unit(np.asarray(audio, np.float64))

    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        return _unit(self.embedder.embed_text(list(texts)))


def pooled_text_features(text_encoder: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Mean of the real-token embeddings of ``text_encoder.encode`` -> (B, dim) float64 (oneDNN off)."""
    out = []
    for start in range(0, len(texts), batch_size):
        with portable_kernels():
            emb, mask = text_encoder.encode(list(texts[start : start + batch_size]))
        m = mask.unsqueeze(-1).to(emb.dtype)
        out.append(((emb * m).sum(1) / m.sum(1).clamp_min(1.0)).double().cpu().numpy())
    return np.concatenate(out)


# local-clap's text side: all-MiniLM-L6-v2 token embeddings (the offline text encoder), mean-pooled
LOCAL_CLAP_TEXT = {"encoder": "minilm", "path": "", "max_length": 64}


@dataclass(frozen=True)
class LocalClapConfig:
    dim: int = 64
    hidden: int = 128
    steps: int = 500
    lr: float = 2e-3
    weight_decay: float = 1e-3
    temperature: float = 0.1
    seed: int = 0


class _Towers(nn.Module):
    def __init__(self, audio_dim: int, text_dim: int, cfg: LocalClapConfig):
        super().__init__()
        self.audio = nn.Sequential(
            nn.Linear(audio_dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.dim)
        )
        self.text = nn.Sequential(nn.Linear(text_dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.dim))


class LocalClap:
    """Trained projections; ``text_encoder`` (MiniLM) is needed for ``text_vectors``."""

    name = LOCAL_CLAP_NAME
    input_kind = "descriptor"

    def __init__(
        self,
        towers: _Towers,
        mean: np.ndarray,
        std: np.ndarray,
        cfg: LocalClapConfig,
        text_encoder: Any = None,
        info: dict[str, Any] | None = None,
    ):
        self.towers, self.mean, self.std, self.cfg = towers.eval(), mean, std, cfg
        self.text_encoder = text_encoder
        self.info = info or {}

    @torch.no_grad()
    def audio_vectors(self, audio: np.ndarray) -> np.ndarray:
        x = torch.from_numpy((np.atleast_2d(audio) - self.mean) / self.std).to(TRAIN_DTYPE)
        return _unit(self.towers.audio(x).double().numpy())

    @torch.no_grad()
    def project_text(self, pooled: np.ndarray) -> np.ndarray:
        return _unit(self.towers.text(torch.from_numpy(pooled).to(TRAIN_DTYPE)).double().numpy())

    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        if self.text_encoder is None:
            raise RuntimeError("LocalClap.text_vectors needs the MiniLM text encoder it was trained with")
        return self.project_text(pooled_text_features(self.text_encoder, texts))

    def save(self, path: str | os.PathLike) -> None:
        payload = {
            "towers": self.towers.state_dict(),
            "mean": torch.from_numpy(self.mean),
            "std": torch.from_numpy(self.std),
            "config": dict(self.cfg.__dict__),
            "info": self.info,
            "audio_dim": int(self.mean.shape[0]),
            "text_dim": int(self.towers.text[0].in_features),
        }
        write_torch_atomic(path, payload)

    @classmethod
    def load(cls, path: str | os.PathLike, text_encoder: Any = None) -> LocalClap:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        cfg = LocalClapConfig(**payload["config"])
        towers = _Towers(payload["audio_dim"], payload["text_dim"], cfg).to(TRAIN_DTYPE)
        towers.load_state_dict(payload["towers"])
        return cls(
            towers, payload["mean"].numpy(), payload["std"].numpy(), cfg, text_encoder, payload["info"]
        )


def train_local_clap(
    audio_x: np.ndarray,
    text_x: np.ndarray,
    tag_keys: Sequence[str],
    cfg: LocalClapConfig = LocalClapConfig(),
    text_encoder: Any = None,
) -> LocalClap:
    """Symmetric multi-positive InfoNCE on (audio_x (B, D), pooled text_x (B, T)); deterministic for a seed.

    Clips whose tag sets are equal (``tag_keys[i] == tag_keys[j]``) count as positives of each other, so
    two captions of the same tags are not pushed apart.
    """
    if len(audio_x) != len(text_x) or len(audio_x) < 2:
        raise ValueError(
            f"local-clap needs >= 2 paired clips, got {len(audio_x)} audio and {len(text_x)} texts"
        )
    torch.manual_seed(cfg.seed)
    mean, std = audio_x.mean(axis=0), audio_x.std(axis=0) + 1e-6
    towers = _Towers(audio_x.shape[1], text_x.shape[1], cfg).to(TRAIN_DTYPE)
    a_in = torch.from_numpy((audio_x - mean) / std).to(TRAIN_DTYPE)
    t_in = torch.from_numpy(text_x).to(TRAIN_DTYPE)
    keys = np.asarray(tag_keys)
    positives = torch.from_numpy(keys[:, None] == keys[None, :]).to(TRAIN_DTYPE)
    target = positives / positives.sum(dim=1, keepdim=True)
    opt = torch.optim.AdamW(towers.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    towers.train()
    for _ in range(cfg.steps):
        noise = 0.05 * torch.randn(a_in.shape, generator=gen, dtype=TRAIN_DTYPE)
        a = nn.functional.normalize(towers.audio(a_in + noise), dim=1)
        t = nn.functional.normalize(towers.text(t_in), dim=1)
        logits = a @ t.T / cfg.temperature
        loss = 0.5 * (
            -(target * logits.log_softmax(dim=1)).sum(1).mean()
            - (target * logits.T.log_softmax(dim=1)).sum(1).mean()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    log.info("local-clap: %d pairs, final contrastive loss %.3f", len(audio_x), loss.item())
    return LocalClap(
        towers.eval(),
        mean,
        std,
        cfg,
        text_encoder,
        {"train_loss": float(loss.item()), "n_train": len(audio_x), "config": dict(cfg.__dict__)},
    )
