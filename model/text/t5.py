"""FLAN-T5-base encoder token embeddings (768-d), frozen, as in the paper.

``text.path`` is a local snapshot directory (what ``huggingface-cli download google/flan-t5-base --local-dir DIR``
writes) or a hub id; empty means the hub id ``google/flan-t5-base``. Only the encoder stack is loaded
(``T5EncoderModel``); the decoder weights in the snapshot are ignored.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from model.text.base import FrozenHFTextEncoder

logger = logging.getLogger(__name__)

FLAN_T5_NAME = "flan-t5"
FLAN_T5_HUB_ID = "google/flan-t5-base"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HOW_TO_GET = (
    f"download the weights on a connected machine with `huggingface-cli download {FLAN_T5_HUB_ID} "
    "--local-dir models/flan-t5-base`, copy that directory here and set text.path to it"
)


def _resolve(path: str) -> tuple[str, bool]:
    """text.path -> (what to pass to from_pretrained, whether it is a local directory)."""
    spec = path or FLAN_T5_HUB_ID
    local = Path(spec).expanduser()
    if local.is_dir():
        return str(local), True
    if local.exists():
        raise NotADirectoryError(f"params.yaml: text.path = {path!r} is a file; it must be a model directory")
    if _HUB_ID.match(spec) and not spec.startswith("."):
        return spec, False
    raise FileNotFoundError(f"params.yaml: text.path = {path!r}: no such directory; {_HOW_TO_GET}")


def load_flan_t5(path: str = "", max_length: int = 64, device: str = "cpu") -> FrozenHFTextEncoder:
    """Frozen FLAN-T5 encoder from a local dir or hub id (see module docstring)."""
    from transformers import AutoTokenizer, T5EncoderModel

    spec, is_local = _resolve(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, local_files_only=is_local)
        model = T5EncoderModel.from_pretrained(spec, local_files_only=is_local, dtype=torch.float32)
    except (OSError, ValueError) as err:  # transformers reports an incomplete snapshot with either
        where = "the local directory" if is_local else "the hub id (the hub is unreachable or offline)"
        raise FileNotFoundError(
            f"params.yaml: text.path = {path!r}: cannot load FLAN-T5 from {where} {spec!r} ({err}); {_HOW_TO_GET}"
        ) from err
    logger.info("text encoder: FLAN-T5 encoder from %s (%d-d tokens)", spec, model.config.d_model)
    return FrozenHFTextEncoder(
        name=FLAN_T5_NAME,
        tokenizer=tokenizer,
        model=model.to(device),
        dim=int(model.config.d_model),
        max_length=max_length,
        source=spec,
    )
