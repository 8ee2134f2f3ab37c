"""The offline concept judge's model: a small seeded multi-label tagger over weight-free audio descriptors.

Trained by the evaluate stage on the train split's instrumental audio (first 10 s), with its decision rule
calibrated on the validation split:

- a category whose every training track has exactly one tag (synthetic genre and mood) is *exclusive*:
  trained with softmax cross-entropy over its concepts and judged by argmax (one concept present);
- any other category (instruments) is multi-label: per-concept sigmoid with binary cross-entropy, and a
  concept is present when its probability reaches a threshold chosen on the validation split to maximise
  that concept's balanced accuracy (mean of the true-positive and true-negative rates), so a tagger that
  calls everything present gains nothing.

Network: standardised descriptor (D,) -> Linear(D, hidden) -> GELU -> dropout -> Linear(hidden, n_concepts),
trained and run in float64 so its judgements do not depend on the CPU's instruction set
(:mod:`evaluation.metrics.portable_numerics`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evaluation.metrics.portable_numerics import TRAIN_DTYPE
from model.runtime.atomic_io import write_torch_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaggerConfig:
    hidden: int = 64
    steps: int = 600
    lr: float = 3e-3
    weight_decay: float = 1e-3
    dropout: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class ConceptVocabulary:
    """Concepts per category, in a fixed order; ``exclusive`` categories have exactly one tag per track."""

    categories: dict[str, tuple[str, ...]]
    exclusive: frozenset[str] = field(default_factory=frozenset)

    @property
    def keys(self) -> list[tuple[str, str]]:
        return [(cat, name) for cat, names in self.categories.items() for name in names]

    def index(self, category: str, name: str) -> int | None:
        """Column of (category, name); an uncategorised concept matches the name in any category."""
        for i, (cat, n) in enumerate(self.keys):
            if n == name and (cat == category or category not in self.categories):
                return i
        return None

    @classmethod
    def from_tags(cls, tags: Sequence[dict[str, Sequence[str]]]) -> ConceptVocabulary:
        cats: dict[str, set[str]] = {}
        counts: dict[str, set[int]] = {}
        for row in tags:
            for cat, names in row.items():
                cats.setdefault(cat, set()).update(names)
                counts.setdefault(cat, set()).add(len(names))
        exclusive = frozenset(c for c, sizes in counts.items() if sizes == {1} and len(cats[c]) > 1)
        return cls({c: tuple(sorted(v)) for c, v in sorted(cats.items()) if v}, exclusive)

    def targets(self, tags: Sequence[dict[str, Sequence[str]]]) -> np.ndarray:
        """(B, K) 0/1 matrix of which vocabulary concepts each row carries."""
        out = np.zeros((len(tags), len(self.keys)), np.float32)
        for row, item in enumerate(tags):
            for cat, names in item.items():
                for name in names:
                    col = self.index(cat, name)
                    if col is not None:
                        out[row, col] = 1.0
        return out


class TaggerNet(nn.Module):
    def __init__(self, in_dim: int, n_concepts: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_concepts)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, D) standardised descriptors -> logits (B, K)."""
        return self.net(x)


class ConceptTagger:
    """Trained tagger + standardisation + decision rule; ``present(features (B, D)) -> (B, K) bool``."""

    name = "tagger (trained on the train split's instrumental audio; thresholds from validation)"

    def __init__(
        self,
        vocab: ConceptVocabulary,
        net: TaggerNet,
        mean: np.ndarray,
        std: np.ndarray,
        thresholds: np.ndarray,
        info: dict[str, Any] | None = None,
    ):
        self.vocab, self.net, self.mean, self.std = vocab, net.eval(), mean, std
        self.thresholds = thresholds
        self.info = info or {}

    def _groups(self) -> list[tuple[str, np.ndarray]]:
        keys = self.vocab.keys
        return [
            (cat, np.array([i for i, (c, _) in enumerate(keys) if c == cat])) for cat in self.vocab.categories
        ]

    @torch.no_grad()
    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(B, D) -> (B, K): softmax within exclusive categories, sigmoid elsewhere."""
        x = torch.from_numpy((np.atleast_2d(features) - self.mean) / self.std).to(TRAIN_DTYPE)
        logits = self.net(x)
        probs = torch.sigmoid(logits)
        for cat, cols in self._groups():
            if cat in self.vocab.exclusive:
                probs[:, cols] = torch.softmax(logits[:, cols], dim=1)
        return probs.double().numpy()

    def present(self, features: np.ndarray) -> np.ndarray:
        probs = self.probabilities(features)
        out = probs >= self.thresholds[None, :]
        for cat, cols in self._groups():
            if cat in self.vocab.exclusive:
                out[:, cols] = probs[:, cols] == probs[:, cols].max(axis=1, keepdims=True)
        return out

    def save(self, path: str | os.PathLike) -> None:
        payload = {
            "categories": {c: list(v) for c, v in self.vocab.categories.items()},
            "exclusive": sorted(self.vocab.exclusive),
            "state_dict": self.net.state_dict(),
            "in_dim": int(self.mean.shape[0]),
            "hidden": int(self.net.net[0].out_features),
            "mean": torch.from_numpy(self.mean),
            "std": torch.from_numpy(self.std),
            "thresholds": torch.from_numpy(self.thresholds),
            "info": self.info,
        }
        write_torch_atomic(path, payload)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ConceptTagger:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        vocab = ConceptVocabulary(
            {c: tuple(v) for c, v in payload["categories"].items()}, frozenset(payload["exclusive"])
        )
        net = TaggerNet(payload["in_dim"], len(vocab.keys), payload["hidden"], 0.0).to(TRAIN_DTYPE)
        net.load_state_dict(payload["state_dict"])
        return cls(
            vocab,
            net,
            payload["mean"].numpy(),
            payload["std"].numpy(),
            payload["thresholds"].numpy(),
            payload["info"],
        )


def _balanced_threshold(probs: np.ndarray, truth: np.ndarray) -> float:
    """Threshold on one concept's probabilities maximising balanced accuracy; 0.5 if one class is absent."""
    if truth.all() or not truth.any():
        return 0.5
    best, best_score = 0.5, -1.0
    for cand in np.unique(np.r_[probs, 0.5]):
        pred = probs >= cand
        score = 0.5 * (pred[truth].mean() + (~pred[~truth]).mean())
        if score > best_score + 1e-12:
            best, best_score = float(cand), score
    return best


def train_tagger(
    train_x: np.ndarray,
    train_tags: Sequence[dict[str, Sequence[str]]],
    val_x: np.ndarray,
    val_tags: Sequence[dict[str, Sequence[str]]],
    config: TaggerConfig = TaggerConfig(),
) -> ConceptTagger:
    """Fit on (train_x (B, D), tags), calibrate thresholds on validation; deterministic for a seed."""
    if len(train_x) < 2 or len(val_x) < 1:
        raise ValueError(
            f"tagger needs >= 2 training and >= 1 validation clips, got {len(train_x)} and {len(val_x)}"
        )
    vocab = ConceptVocabulary.from_tags(train_tags)
    if not vocab.keys:
        raise ValueError("tagger: the training split carries no concepts (genre/instrument/mood tags)")
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0) + 1e-6
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    net = TaggerNet(train_x.shape[1], len(vocab.keys), config.hidden, config.dropout).to(TRAIN_DTYPE)
    x = torch.from_numpy((train_x - mean) / std).to(TRAIN_DTYPE)
    y = torch.from_numpy(vocab.targets(train_tags)).to(TRAIN_DTYPE)
    groups = [
        (cat in vocab.exclusive, torch.tensor([i for i, (c, _) in enumerate(vocab.keys) if c == cat]))
        for cat in vocab.categories
    ]
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    net.train()
    for _ in range(config.steps):
        noise = 0.05 * torch.randn(x.shape, generator=gen, dtype=TRAIN_DTYPE)
        logits = net(x + noise)
        loss = torch.zeros((), dtype=TRAIN_DTYPE)
        for exclusive, cols in groups:
            if exclusive:
                loss = loss + nn.functional.cross_entropy(logits[:, cols], y[:, cols].argmax(dim=1))
            else:
                loss = loss + nn.functional.binary_cross_entropy_with_logits(logits[:, cols], y[:, cols])
        opt.zero_grad()
        loss.backward()
        opt.step()
    tagger = ConceptTagger(vocab, net.eval(), mean, std, np.full(len(vocab.keys), 0.5))
    val_probs = tagger.probabilities(val_x)
    val_truth = vocab.targets(val_tags).astype(bool)
    tagger.thresholds = np.array(
        [_balanced_threshold(val_probs[:, k], val_truth[:, k]) for k in range(len(vocab.keys))]
    )
    val_pred = tagger.present(val_x)
    tagger.info = {
        "train_loss": float(loss.item()),
        "n_train": len(train_x),
        "n_validation": len(val_x),
        "validation_accuracy": float((val_pred == val_truth).mean()),
        "config": config.__dict__,
    }
    log.info(
        "tagger: %d concepts, final train loss %.3f, validation accuracy %.3f",
        len(vocab.keys),
        loss.item(),
        tagger.info["validation_accuracy"],
    )
    return tagger
