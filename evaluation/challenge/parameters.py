"""The parameter count an efficiency-track entry reports, computed from the exported model, and the track limits.

``count_parameters(models/final)`` sums the elements of every tensor of ``model.safetensors`` (the trained velocity
network's EMA weights; the network has no buffers, so that is its parameter count) read from the file's header,
and fingerprints the file (sha256), so the count is tied to the weights that made the audio. The frozen text
encoder and codec are not in ``models/final``; the record names them (from ``config.json``) as not counted.
Whether the organisers count frozen pretrained components towards the 500M is not known (docs/evaluation.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from model.runtime.errors import InputError

# reported by the organisers' overview paper: efficiency <= 500M parameters, performance unlimited
TRACK_LIMITS: dict[str, int | None] = {"efficiency": 500_000_000, "performance": None}
COUNTED = "every tensor of model.safetensors: the trained velocity network (EMA weights)"


class ParameterCountError(InputError, FileNotFoundError):
    """The exported model cannot be counted (missing or unreadable ``model.safetensors``)."""


def count_parameters(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The parameter-count record of ``model_dir`` (``train.out_dir``): parameters, tensors, the weights' sha256,
    what was counted and what was not."""
    from safetensors import safe_open

    root = Path(model_dir)
    weights = root / "model.safetensors"
    if not weights.is_file():
        raise ParameterCountError(f"{weights}: not found; train and export a model first (dvc repro train)")
    try:
        with safe_open(str(weights), framework="numpy") as f:
            shapes = {name: f.get_slice(name).get_shape() for name in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise ParameterCountError(f"{weights}: not a readable safetensors file ({exc})") from exc
    digest = hashlib.sha256()
    with weights.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    config = json.loads((root / "config.json").read_text()) if (root / "config.json").is_file() else {}
    return {
        "parameters": int(sum(math.prod(s) for s in shapes.values())),
        "tensors": len(shapes),
        "counted": COUNTED,
        "weights": weights.name,
        "weights_sha256": digest.hexdigest(),
        "not_counted": {
            "text_encoder": (config.get("text") or {}).get("encoder", "unknown"),
            "codec": (config.get("codec") or {}).get("name", "unknown"),
        },
    }


def parameter_problems(record: dict[str, Any], track: str) -> list[str]:
    """What is wrong with a parameter-count record for ``track`` (empty when it is within the track's limit)."""
    if track not in TRACK_LIMITS:
        return [f"track {track!r} is not one of {', '.join(TRACK_LIMITS)}"]
    count = record.get("parameters")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return [f"parameter count {count!r} is not a non-negative integer"]
    limit = TRACK_LIMITS[track]
    if limit is not None and count > limit:
        return [
            f"{count:,} parameters exceed the {track} track's limit of {limit:,}; "
            "submit to the performance track (submit.track) or use a smaller network"
        ]
    return []
