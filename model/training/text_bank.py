"""Text embeddings for training: computed once per unique caption, cached on disk as float16.

The cache is keyed by the encoder, its settings and the caption set (:meth:`TextBank.cached`), written atomically
(``model.runtime.atomic_io.atomic_dir``) and memory-mapped, so every process of a run maps the same file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from model.flow.tokens import stack_tokens
from model.runtime.atomic_io import atomic_dir

logger = logging.getLogger(__name__)

TEXT_TOKENS, TEXT_INDEX = "tokens.npy", "index.json"


@dataclass(frozen=True)
class TextBank:
    """Token embeddings per unique caption (real tokens only) as one float16 array, plus the null text.

    ``tokens`` (N, E) float16 holds every caption's tokens back to back (a memory map when loaded from the cache);
    ``spans[caption] = (start, end)`` are its rows, ``null`` the rows of the empty text.
    """

    tokens: np.ndarray
    spans: dict[str, tuple[int, int]]
    null: tuple[int, int]
    dim: int

    @classmethod
    def from_tensors(cls, embeddings: dict[str, torch.Tensor], null: torch.Tensor, dim: int) -> TextBank:
        """From caption -> (L_i, E) tensors and the null text's (L0, E)."""
        rows, spans, at = [], {}, 0
        for caption, emb in embeddings.items():
            rows.append(emb.detach().float().cpu().numpy().astype(np.float16))
            spans[caption] = (at, at + emb.shape[0])
            at += emb.shape[0]
        rows.append(null.detach().float().cpu().numpy().astype(np.float16))
        null_span = (at, at + null.shape[0])
        at += null.shape[0]
        return cls(np.concatenate(rows).reshape(at, dim), spans, null_span, int(dim))

    @classmethod
    def build(cls, encoder: Any, captions: Sequence[str], batch_size: int = 64) -> TextBank:
        """Encode each distinct caption once with ``encoder.encode(list[str]) -> (emb (B, L, E), mask (B, L))``."""
        unique = list(dict.fromkeys(captions))
        bank: dict[str, torch.Tensor] = {}
        for start in tqdm(
            range(0, len(unique), batch_size), desc="text embeddings", unit="batch", leave=False
        ):
            chunk = unique[start : start + batch_size]
            bank.update(zip(chunk, _real_tokens(*encoder.encode(chunk)), strict=True))
        null = _real_tokens(*encoder.encode([""]))[0]
        logger.info("encoded %d unique captions with %s (dim %d)", len(unique), encoder.name, encoder.dim)
        return cls.from_tensors(bank, null, int(encoder.dim))

    @classmethod
    def cached(
        cls,
        encoder: Any,
        captions: Sequence[str],
        cache_root: str | Path,
        settings: dict[str, Any],
        batch_size: int = 64,
    ) -> TextBank:
        """:meth:`build` once per (encoder, ``settings``, caption set) into ``cache_root/<key>``, then map it."""
        unique = sorted(set(captions))
        key = hashlib.sha256(
            json.dumps(
                [encoder.name, int(encoder.dim), settings, unique], sort_keys=True, default=str
            ).encode()
        ).hexdigest()[:16]
        directory = Path(cache_root) / f"text-{key}"
        if not (directory / TEXT_INDEX).exists():
            bank = cls.build(encoder, unique, batch_size)
            bank.save(directory)
            logger.info("cached text embeddings in %s", directory)
        return cls.load(directory)

    def save(self, directory: str | Path) -> None:
        """Write ``tokens.npy`` and ``index.json`` into ``directory`` (complete or absent; when workers race to
        fill the same cache, the first one's files are kept)."""
        with atomic_dir(directory, first_wins=True) as tmp:
            np.save(tmp / TEXT_TOKENS, np.ascontiguousarray(self.tokens, dtype=np.float16))
            index = {
                "dim": self.dim,
                "null": list(self.null),
                "spans": {c: list(s) for c, s in self.spans.items()},
            }
            (tmp / TEXT_INDEX).write_text(json.dumps(index))

    @classmethod
    def load(cls, directory: str | Path) -> TextBank:
        index = json.loads((Path(directory) / TEXT_INDEX).read_text())
        tokens = np.load(Path(directory) / TEXT_TOKENS, mmap_mode="r")
        return cls(
            tokens,
            {c: (int(a), int(b)) for c, (a, b) in index["spans"].items()},
            (int(index["null"][0]), int(index["null"][1])),
            int(index["dim"]),
        )

    def embedding(self, caption: str) -> torch.Tensor:
        """(L, E) float32 tokens of one caption."""
        start, end = self.spans[caption]
        return torch.from_numpy(np.asarray(self.tokens[start:end], dtype=np.float32))

    def batch(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """captions -> (emb (B, L, E) zero-padded, mask (B, L) bool) with L the longest caption in the batch."""
        return stack_tokens([self.embedding(c) for c in captions])

    def null_condition(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The CFG null condition: (emb (1, L0, E), mask (1, L0))."""
        start, end = self.null
        return stack_tokens([torch.from_numpy(np.asarray(self.tokens[start:end], dtype=np.float32))])


def _real_tokens(emb: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for row, row_mask in zip(emb, mask, strict=True):
        tokens = row[row_mask.bool().to(row.device)].detach().float().cpu()
        if tokens.shape[0] == 0:
            raise ValueError(
                "text encoder returned no real tokens for a caption; every text needs >= 1 token"
            )
        out.append(tokens)
    return out
