"""The text-encoder interface and its one implementation over a frozen Hugging Face encoder.

Every text encoder turns a batch of captions into per-token embeddings and a padding mask:
``encode(texts) -> (emb (B, L, dim) float32, mask (B, L) bool)``, ``mask`` True on real tokens (special tokens
included), padded positions of ``emb`` are exactly zero. The CFG null condition is ``encode([""])``; it always has
at least the tokenizer's special tokens, so its mask is never empty.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

logger = logging.getLogger(__name__)


@runtime_checkable
class TextEncoder(Protocol):
    """What the trainer and the samplers rely on."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """texts: B strings -> (emb (B, L, dim) float32, mask (B, L) bool, True = real token)."""
        ...

    def settings(self) -> dict[str, Any]:
        """JSON-able description (for config.json and provenance)."""
        ...


def check_max_length(max_length: object) -> int:
    """text.max_length must be an integer >= 2 (room for the special tokens and at least one word)."""
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
        raise ValueError(f"params.yaml: text.max_length must be an integer >= 2, got {max_length!r}")
    return max_length


class FrozenHFTextEncoder:
    """A frozen transformers encoder (``last_hidden_state``) behind the :class:`TextEncoder` interface.

    Frozen: eval mode (no dropout), ``requires_grad`` off, run under ``torch.no_grad`` (not inference mode, so the
    outputs can feed a network that is being trained). Deterministic: the same text always maps to the same tensor,
    which the in-memory LRU cache (keyed by text; captions repeat across clips and epochs) makes exact.
    """

    def __init__(
        self,
        name: str,
        tokenizer: Any,
        model: nn.Module,
        dim: int,
        max_length: int,
        source: str,
        batch_size: int = 64,
        cache_size: int = 8192,
    ) -> None:
        check_max_length(max_length)
        self.name = name
        self.dim = int(dim)
        self.max_length = max_length
        self.source = source
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._tokenizer = tokenizer
        self._model = model.eval().requires_grad_(False)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @property
    def device(self) -> torch.device:
        return next(self._model.parameters()).device

    def to(self, device: str | torch.device) -> FrozenHFTextEncoder:
        """Move the encoder (and its cache) to ``device``; outputs are returned there."""
        self._model.to(device)
        self._cache = OrderedDict((k, v.to(device)) for k, v in self._cache.items())
        return self

    def settings(self) -> dict[str, Any]:
        return {"encoder": self.name, "path": self.source, "max_length": self.max_length, "dim": self.dim}

    def clear_cache(self) -> None:
        self._cache.clear()

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """texts: B strings -> (emb (B, L, dim) float32, mask (B, L) bool); L = longest tokenisation in the batch."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("encode expects a list of strings (wrap a single caption in a list)")
        if len(texts) == 0:
            raise ValueError("encode got an empty list of texts")
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh: dict[str, torch.Tensor] = {}
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            fresh.update(zip(chunk, self._encode_uncached(chunk), strict=True))
        for text, tokens in fresh.items():
            self._remember(text, tokens)
        # fresh first: a batch with more distinct texts than cache_size evicts some of its own entries
        per_text = [fresh[t] if t in fresh else self._lookup(t) for t in texts]
        length = max(e.shape[0] for e in per_text)
        emb = torch.zeros(len(texts), length, self.dim, dtype=torch.float32, device=self.device)
        mask = torch.zeros(len(texts), length, dtype=torch.bool, device=self.device)
        for row, tokens in enumerate(per_text):
            emb[row, : tokens.shape[0]] = tokens
            mask[row, : tokens.shape[0]] = True
        return emb, mask

    def _encode_uncached(self, texts: list[str]) -> list[torch.Tensor]:
        """texts -> one (L_i, dim) float32 tensor per text, its real tokens only."""
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        attention = batch["attention_mask"].bool()
        lengths = attention.sum(dim=1)
        if bool((lengths == 0).any()):
            bad = [t for t, n in zip(texts, lengths.tolist(), strict=True) if n == 0]
            raise ValueError(
                f"text encoder {self.name!r}: the tokenizer produced no tokens for {bad!r}; "
                "it must add special tokens so that every text (the empty CFG null text included) has a token"
            )
        inputs = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        if "token_type_ids" in batch:
            inputs["token_type_ids"] = batch["token_type_ids"].to(self.device)
        with torch.no_grad():
            hidden = self._model(**inputs).last_hidden_state.float()
        attention = attention.to(self.device)
        # right padding is what both tokenizers do; select by mask so left padding would also be handled
        return [hidden[i][attention[i]].clone() for i in range(len(texts))]

    def _remember(self, text: str, tokens: torch.Tensor) -> None:
        self._cache[text] = tokens
        self._cache.move_to_end(text)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _lookup(self, text: str) -> torch.Tensor:
        tokens = self._cache[text]
        self._cache.move_to_end(text)
        return tokens
