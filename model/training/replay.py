"""Replay while fine-tuning (``train.replay``, docs/finetune.md): mix the training split of another packed store —
the base model's own data — into every batch, so a model fine-tuned on a small folder keeps what it knew.

:func:`open_replay` opens that split after checking that it was encoded like this run's data (codec and its
settings, latent channels, frame rate: both values named when not) and returns it with its identity for the run
fingerprint: the store's shard listing (names and sizes), not its path, so a moved store resumes the same run
and a re-packed one starts a new run directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from model.data.store import PackedClips, read_description
from model.runtime.errors import InputError

logger = logging.getLogger(__name__)

COMPARED = ("codec", "settings", "dim", "frame_rate")


class ReplayMismatchError(InputError, ValueError):
    """``train.replay.store`` holds data this run cannot mix with its own; the message names both values."""


def open_replay(replay_store: str, store_dir: str) -> tuple[PackedClips, dict[str, Any]]:
    """The train split of ``replay_store`` and its fingerprint entry; refused when it was encoded otherwise than
    the run's own store ``store_dir``."""
    if not (Path(replay_store) / "store.json").exists():
        raise ReplayMismatchError(
            f"params.yaml: train.replay.store = {replay_store} is not a packed latent store (no store.json); "
            "name the pack.out_dir of the base model's data (e.g. data/latents/store)"
        )
    theirs, ours = read_description(replay_store), read_description(store_dir)
    differ = [
        f"{key}: replay {theirs.get(key)!r}, this run {ours.get(key)!r}"
        for key in COMPARED
        if theirs.get(key) != ours.get(key)
    ]
    if differ:
        raise ReplayMismatchError(
            f"params.yaml: train.replay.store = {replay_store} was encoded otherwise than this run's data "
            f"({store_dir}): {'; '.join(differ)}. Replay data of the same codec settings (the base's own store)"
        )
    if Path(replay_store).resolve() == Path(store_dir).resolve():
        logger.warning(
            "train.replay.store is this run's own store (%s): batches mix the data with itself", store_dir
        )
    clips = PackedClips.open(replay_store, "train")
    identity = {
        "shards": hashlib.sha256(json.dumps(theirs["shards"]).encode()).hexdigest()[:16],
        "clips": len(clips),
    }
    return clips, identity
