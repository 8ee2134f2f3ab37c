"""Clip policy and the encode plan: which windows of which tracks become latent clips, in which shard.

A track of S seconds yields clips starting at 0, hop, 2·hop, ... (at most ``max_clips_per_track``); each clip is
``clip_seconds`` long, the last one zero-padded, and a clip with less than ``min_seconds`` of real audio is dropped.
The plan is a pure function of the manifest (sorted by track_id) and the policy, so shard contents never depend on
how many workers encode them, and a rerun finds the same shard for the same clip.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ClipPolicy:
    """``encode.clip_seconds``, ``encode.hop_seconds``, ``encode.max_clips_per_track`` (0 = no limit),
    ``encode.min_clip_seconds`` (shorter remainders are dropped)."""

    clip_seconds: float
    hop_seconds: float
    max_clips_per_track: int
    min_clip_seconds: float

    def __post_init__(self) -> None:
        if not self.clip_seconds > 0:
            raise ValueError(f"params.yaml: encode.clip_seconds = {self.clip_seconds!r} must be > 0")
        if not self.hop_seconds > 0:
            raise ValueError(f"params.yaml: encode.hop_seconds = {self.hop_seconds!r} must be > 0")
        if self.max_clips_per_track < 0:
            raise ValueError(
                f"params.yaml: encode.max_clips_per_track = {self.max_clips_per_track!r} must be >= 0 (0 = no limit)"
            )
        if not 0 < self.min_clip_seconds <= self.clip_seconds:
            raise ValueError(
                f"params.yaml: encode.min_clip_seconds = {self.min_clip_seconds!r} must be in (0, clip_seconds]"
            )

    def windows(self, seconds: float) -> list[tuple[float, float]]:
        """(start_s, valid_s) of every clip of a ``seconds``-long track; valid_s <= clip_seconds."""
        out: list[tuple[float, float]] = []
        k = 0
        while self.max_clips_per_track == 0 or k < self.max_clips_per_track:
            start = k * self.hop_seconds
            valid = min(self.clip_seconds, seconds - start)
            if valid < self.min_clip_seconds - 1e-9:
                break
            out.append((start, valid))
            k += 1
        return out


@dataclass(frozen=True)
class ClipTask:
    """One clip to encode: the audio window and the text/tag fields copied into its shard row."""

    shard_index: int
    track_id: str
    path: str
    clip_index: int
    start_s: float
    valid_s: float
    caption: str = ""
    genre: tuple[str, ...] = ()
    instrument: tuple[str, ...] = ()
    mood: tuple[str, ...] = ()
    split: str = ""


@dataclass(frozen=True)
class TrackSource:
    """A manifest row joined with its tracks.parquet fields."""

    track_id: str
    path: str
    seconds: float
    caption: str = ""
    genre: tuple[str, ...] = ()
    instrument: tuple[str, ...] = ()
    mood: tuple[str, ...] = ()
    split: str = ""


@dataclass(frozen=True)
class EncodePlan:
    """Every clip, grouped into shards of ``shard_rows`` clips and batches of at most ``batch_size`` clips.

    ``too_short`` lists tracks that yield no clip (shorter than ``min_clip_seconds``).
    """

    shards: tuple[tuple[ClipTask, ...], ...]
    batch_size: int
    too_short: tuple[TrackSource, ...] = field(default=())

    def batches(self, shard_index: int) -> list[tuple[ClipTask, ...]]:
        """The fixed batches of one shard (fixed so that results never depend on scheduling)."""
        clips = self.shards[shard_index]
        return [clips[i : i + self.batch_size] for i in range(0, len(clips), self.batch_size)]

    def fingerprint(self, extra: dict[str, Any] | None = None) -> str:
        """A hash of the clip list, the audio files' size/mtime and ``extra`` (e.g. codec settings).

        A resumed run keeps finished shards only when the fingerprint matches.
        """
        h = hashlib.sha256()
        h.update(
            json.dumps({"batch_size": self.batch_size, **(extra or {})}, sort_keys=True, default=str).encode()
        )
        for shard in self.shards:
            for clip in shard:
                h.update(json.dumps(asdict(clip), sort_keys=True).encode())
        for path in sorted({c.path for shard in self.shards for c in shard}):
            h.update(f"{path}:{file_signature(path)}".encode())  # a re-separated file changes its clips
        return h.hexdigest()[:16]


def plan_clips(
    tracks: Sequence[TrackSource], policy: ClipPolicy, shard_rows: int, batch_size: int
) -> EncodePlan:
    """Cut tracks (any order; sorted by track_id here) into clips, then into shards of ``shard_rows`` clips."""
    if shard_rows < 1:
        raise ValueError(f"params.yaml: encode.shard_rows = {shard_rows!r} must be >= 1")
    if batch_size < 1:
        raise ValueError(f"params.yaml: encode.batch_size = {batch_size!r} must be >= 1")
    ids = [t.track_id for t in tracks]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"instrumental manifest: duplicate track_id(s) {dupes}")
    flat: list[dict[str, Any]] = []
    too_short: list[TrackSource] = []
    for t in sorted(tracks, key=lambda t: t.track_id):
        windows = policy.windows(t.seconds)
        if not windows:
            too_short.append(t)
        for k, (start, valid) in enumerate(windows):
            flat.append(
                dict(
                    track_id=t.track_id,
                    path=t.path,
                    clip_index=k,
                    start_s=start,
                    valid_s=valid,
                    caption=t.caption,
                    genre=tuple(t.genre),
                    instrument=tuple(t.instrument),
                    mood=tuple(t.mood),
                    split=t.split,
                )
            )
    n_shards = math.ceil(len(flat) / shard_rows)
    shards = tuple(
        tuple(ClipTask(shard_index=s, **row) for row in flat[s * shard_rows : (s + 1) * shard_rows])
        for s in range(n_shards)
    )
    return EncodePlan(shards=shards, batch_size=batch_size, too_short=tuple(too_short))


def file_signature(path: str) -> str:
    """Size and modification time of an audio file ('missing' when absent)."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def valid_frames(valid_s: float, frame_rate: float, total_frames: int) -> int:
    """Latent frames covering ``valid_s`` seconds of real audio, clamped to [1, total_frames]."""
    return max(1, min(total_frames, int(math.ceil(valid_s * frame_rate - 1e-6))))
