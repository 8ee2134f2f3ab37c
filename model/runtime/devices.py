"""Device selection shared by every component that takes a ``device`` param."""

from __future__ import annotations

import torch


def resolve_device(spec: str | None, param: str = "device") -> torch.device:
    """``auto``/empty/``None`` -> the first CUDA device when present, else CPU; anything else is taken as given.

    ``param`` names the params.yaml key in the error for a string that is not a torch device.
    """
    if spec in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(
            f"params.yaml: {param} = {spec!r} is not a torch device (use auto, cpu, cuda, cuda:N)"
        ) from exc
