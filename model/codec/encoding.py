"""The encode stage's work: planned clips -> codec latents -> Parquet shards, with Ray Data and an actor pool.

Each Ray Data row is one fixed batch of the plan (``model.data.clips.EncodePlan``); a pool of actors, each holding one
codec (one per GPU when present, else ``encode.workers`` CPU actors), encodes batches; the driver collects the
results per shard and writes a shard as soon as all its clips are in. A shard file exists only when complete
(atomic write) and is then entered in the resume ledger beside the folder (``model.runtime.resume_ledger``), so a
killed run redoes only the shards it had not written; the folder itself holds only shards and rejects. Clips that
fail to decode or whose latents are not finite (in float32 or after the float16 cast) go to rejects, never into a
shard.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from model.audio.io import AudioDecodeError, crop_or_pad, load_audio
from model.data.clips import ClipTask, EncodePlan, valid_frames
from model.data.shards import ClipRecord, ShardMetadata, shard_name, shard_paths, write_shard
from model.runtime.atomic_io import write_parquet_atomic
from model.runtime.resume_ledger import ResumeLedger

log = logging.getLogger(__name__)

REJECTS_SCHEMA = pa.schema([("track_id", pa.string()), ("path", pa.string()), ("reason", pa.string())])
PARTIAL_REJECTS_DIR = "_rejects"  # per-shard rejects, merged into rejects.parquet at the end
# written inside the (hashed, persisted) shard folder by earlier versions; the ledger replaces them
LEGACY_FILES = ("plan.json", "provenance.json")


def describe_codec(codec: Any, clip_seconds: float) -> ShardMetadata:
    """Shard metadata for ``codec`` and clips of ``clip_seconds``."""
    n_samples = int(round(clip_seconds * codec.sample_rate))
    frames = codec.num_frames(n_samples)
    return ShardMetadata(
        codec=codec.name,
        settings=codec.settings(),
        latent_shape=(int(codec.latent_dim), frames),
        frame_rate=float(codec.frame_rate),
    )


def encode_clips(
    codec: Any, clips: list[ClipTask], clip_seconds: float
) -> list[tuple[np.ndarray | None, int, str]]:
    """Encode one fixed batch: per clip (latent (D, T) float16 with padding frames zeroed, n_frames, reason).

    ``reason`` is empty for a good clip; otherwise the latent is None.
    """
    n_samples = int(round(clip_seconds * codec.sample_rate))
    out: list[tuple[np.ndarray | None, int, str]] = [(None, 0, "")] * len(clips)
    waves, valid, index = [], [], []
    for i, clip in enumerate(clips):
        try:
            audio, _ = load_audio(clip.path, codec.sample_rate, codec.channels, clip.start_s, clip.valid_s)
        except AudioDecodeError as exc:
            out[i] = (None, 0, f"clip {clip.clip_index}: {exc.reason}")
            continue
        valid.append(min(audio.shape[1], n_samples) / codec.sample_rate)
        waves.append(crop_or_pad(audio, n_samples))
        index.append(i)
    if not waves:
        return out
    import torch

    with torch.no_grad():
        z = codec.encode(torch.from_numpy(np.stack(waves))).float().cpu().numpy()
    for j, i in enumerate(index):
        latent = z[j]
        n_frames = valid_frames(valid[j], codec.frame_rate, latent.shape[1])
        latent[:, n_frames:] = 0.0
        half = latent.astype(np.float16)
        if not np.isfinite(latent).all():
            out[i] = (None, 0, f"clip {clips[i].clip_index}: non-finite latent (NaN/inf) from the codec")
        elif not np.isfinite(half).all():
            out[i] = (None, 0, f"clip {clips[i].clip_index}: latent exceeds the float16 range (|z| > 65504)")
        else:
            out[i] = (half, n_frames, "")
    return out


class ClipBatchEncoder:
    """Ray Data actor: holds one codec; maps rows {shard_index, clips_json} to one output row per clip."""

    def __init__(self, codec_factory: Callable[[], Any], clip_seconds: float, latent_shape: tuple[int, int]):
        import torch

        if not torch.cuda.is_available():
            torch.set_num_threads(1)  # one CPU per actor; parallelism comes from the pool
        self.codec = codec_factory()
        self.clip_seconds = clip_seconds
        self.latent_shape = latent_shape

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shard, position, n_frames, reasons, latents = [], [], [], [], []
        for s, first, clips_json in zip(
            batch["shard_index"], batch["first_position"], batch["clips_json"], strict=True
        ):
            clips = [
                ClipTask(**{**c, **{k: tuple(c[k]) for k in ("genre", "instrument", "mood")}})
                for c in json.loads(clips_json)
            ]
            for k, (latent, frames, reason) in enumerate(encode_clips(self.codec, clips, self.clip_seconds)):
                shard.append(int(s))
                position.append(int(first) + k)
                n_frames.append(frames)
                reasons.append(reason)
                latents.append(np.zeros(self.latent_shape, np.float16) if latent is None else latent)
        return {
            "shard_index": np.asarray(shard, np.int64),
            "position": np.asarray(position, np.int64),
            "n_frames": np.asarray(n_frames, np.int32),
            "reason": np.asarray(reasons, dtype=object),
            "latent": np.stack(latents),
        }


@dataclass(frozen=True)
class EncodeSummary:
    """What one run did; ``startup_s`` is the wait for the first encoded batch (actor start-up), ``wall_s`` the
    whole run, ``clips_after_startup`` the clips that arrived after the first batch (for steady-state rates)."""

    shards_total: int
    shards_written: int
    clips_written: int
    rejects: int
    startup_s: float = 0.0
    wall_s: float = 0.0
    clips_after_startup: int = 0


def prepare_out_dir(out_dir: Path, fingerprint: str) -> ResumeLedger:
    """Keep the shards a run of the same plan finished (per the resume ledger) and remove every other shard and
    partial-rejects file; returns the opened ledger (``names``: the kept shards)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in LEGACY_FILES:
        (out_dir / name).unlink(missing_ok=True)
    ledger = ResumeLedger(out_dir, {"plan": fingerprint})
    kept = ledger.open()
    stale = [p for p in shard_paths(out_dir) if p.name not in kept] + [
        p for p in sorted((out_dir / PARTIAL_REJECTS_DIR).glob("*.parquet")) if p.name not in kept
    ]
    if stale:
        log.warning(
            "%s: removing %d files not finished under this plan (params, codec or manifest changed, a killed "
            "write, or files checked out by DVC)",
            out_dir,
            len(stale),
        )
        for p in stale:
            p.unlink()
    return ledger


def pending_shards(plan: EncodePlan, finished: set[str]) -> list[int]:
    return [s for s in range(len(plan.shards)) if shard_name(s) not in finished]


def run_encode(
    plan: EncodePlan,
    out_dir: str | os.PathLike,
    codec_factory: Callable[[], Any],
    meta: ShardMetadata,
    clip_seconds: float,
    workers: int,
    use_gpu: bool = False,
) -> EncodeSummary:
    """Encode every unfinished shard of ``plan`` into ``out_dir``; merge all rejects into rejects.parquet.

    Needs a running Ray (``model.runtime.ray_session.ray_session``): a local instance or a cluster, where each
    actor asks for one GPU (``use_gpu``) or one CPU; only the driver writes files. Shard contents depend only on
    the plan.
    """
    import ray.data

    started = time.perf_counter()
    first_result: float | None = None
    clips_after_startup = 0
    out = Path(out_dir)
    ledger = prepare_out_dir(
        out, plan.fingerprint({"codec": meta.settings, "shape": list(meta.latent_shape)})
    )
    todo = pending_shards(plan, ledger.names)
    log.info(
        "%d of %d shards to encode (%d workers%s)",
        len(todo),
        len(plan.shards),
        workers,
        ", GPU" if use_gpu else "",
    )
    written = clips_written = 0
    if todo:
        rows = []
        for s in todo:
            position = 0
            for batch in plan.batches(s):
                rows.append(
                    {
                        "shard_index": s,
                        "first_position": position,
                        # absolute paths: the actor may run on another node, in another directory
                        "clips_json": json.dumps(
                            [{**asdict(c), "path": os.path.abspath(c.path)} for c in batch]
                        ),
                    }
                )
                position += len(batch)
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(
            ClipBatchEncoder,
            fn_constructor_args=(codec_factory, clip_seconds, meta.latent_shape),
            batch_size=1,
            batch_format="numpy",
            concurrency=workers,
            num_cpus=0 if use_gpu else 1,
            num_gpus=1 if use_gpu else 0,
        )
        collected: dict[int, dict[int, tuple[np.ndarray, int, str]]] = {s: {} for s in todo}
        bar = tqdm(total=sum(len(plan.shards[s]) for s in todo), desc="encode", unit="clip")
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            if first_result is None:
                first_result = time.perf_counter() - started
                log.info("first batch encoded after %.1f s (actor start-up)", first_result)
            else:
                clips_after_startup += len(batch["position"])
            for s, pos, frames, reason, latent in zip(
                batch["shard_index"],
                batch["position"],
                batch["n_frames"],
                batch["reason"],
                batch["latent"],
                strict=True,
            ):
                collected[int(s)][int(pos)] = (latent, int(frames), str(reason))
                bar.update()
                if len(collected[int(s)]) == len(plan.shards[int(s)]):
                    clips_written += _write_shard(out, plan, int(s), collected.pop(int(s)), meta)
                    ledger.finished(shard_name(int(s)))
                    written += 1
        bar.close()
        if collected:
            raise RuntimeError(f"encode: results missing for shard(s) {sorted(collected)}; rerun to resume")
    n_rejects = _merge_rejects(out, plan)
    return EncodeSummary(
        len(plan.shards),
        written,
        clips_written,
        n_rejects,
        first_result or 0.0,
        time.perf_counter() - started,
        clips_after_startup,
    )


def _write_shard(
    out: Path, plan: EncodePlan, s: int, results: dict[int, tuple[np.ndarray, int, str]], meta: ShardMetadata
) -> int:
    records, rejects = [], []
    for pos, clip in enumerate(plan.shards[s]):
        latent, n_frames, reason = results[pos]
        if reason:
            rejects.append({"track_id": clip.track_id, "path": clip.path, "reason": reason})
            continue
        records.append(
            ClipRecord(
                track_id=clip.track_id,
                clip_index=clip.clip_index,
                start_s=clip.start_s,
                n_frames=n_frames,
                latent=latent,
                caption=clip.caption,
                genre=clip.genre,
                instrument=clip.instrument,
                mood=clip.mood,
                split=clip.split,
            )
        )
    # rejects first: a shard file that exists implies its rejects are on disk too
    write_parquet_atomic(
        out / PARTIAL_REJECTS_DIR / shard_name(s), pa.Table.from_pylist(rejects, REJECTS_SCHEMA)
    )
    write_shard(out / shard_name(s), records, meta)
    return len(records)


def _merge_rejects(out: Path, plan: EncodePlan) -> int:
    parts = [pq.read_table(p) for p in sorted((out / PARTIAL_REJECTS_DIR).glob("shard-*.parquet"))]
    short = [
        {
            "track_id": t.track_id,
            "path": t.path,
            "reason": f"too short: {t.seconds:.2f} s, below encode.min_clip_seconds",
        }
        for t in plan.too_short
    ]
    table = (
        pa.concat_tables([*parts, pa.Table.from_pylist(short, REJECTS_SCHEMA)])
        if parts or short
        else pa.Table.from_pylist([], REJECTS_SCHEMA)
    )
    table = table.sort_by([("track_id", "ascending"), ("reason", "ascending")])
    write_parquet_atomic(out / "rejects.parquet", table)
    return table.num_rows
