"""Stage ``encode``: instrumental audio -> latent clips in Parquet shards (Ray Data, an actor pool of codecs).

Reads ``<separate.out_dir>/manifest.parquet`` and ``<data.prepared_dir>/tracks.parquet`` (captions, tags, split),
the ``codec:`` and ``encode:`` params and ``ray.address`` (a Ray cluster to run on: docs/scaling-out.md);
writes ``<encode.out_dir>/shard-NNNNN.parquet`` (format in docs/ARCHITECTURE.md) and ``rejects.parquet``; the
resume ledger ``<encode.out_dir>.resume.jsonl`` beside the folder and the run record ``provenance/encode.json``.
Rerunning after a kill encodes only the shards that are missing.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from model.codec import build_codec
from model.codec.encoding import describe_codec, run_encode
from model.data.clips import ClipPolicy, TrackSource, plan_clips
from model.runtime.ray_session import (
    available_cpus,
    check_visible,
    cluster_gpus,
    cuda_device_count,
    ray_session,
    resolve_address,
)
from pipelines.common.cli import run_main
from pipelines.common.logs import setup_logging
from pipelines.common.params import config_of, load_params, stage_arg_parser
from pipelines.common.provenance import write_run_record
from pipelines.common.schema import EncodeSection

log = logging.getLogger("pipelines.encode")

TAG_COLUMNS = ("genre", "instrument", "mood")


@dataclass(frozen=True)
class EncodeConfig:
    """The ``encode:`` keys this stage reads (meaning of each key: docs/stages/encode.md)."""

    policy: ClipPolicy
    shard_rows: int
    batch_size: int
    workers: int
    out_dir: str

    @classmethod
    def from_section(cls, section: EncodeSection) -> EncodeConfig:
        return cls(
            policy=config_of(ClipPolicy, section),
            shard_rows=section.shard_rows,
            batch_size=section.batch_size,
            workers=section.workers,
            out_dir=section.out_dir,
        )

    def used(self) -> dict[str, Any]:
        """The keys as provenance records them (``encode.stats_path`` belongs to the stats stage)."""
        return {**asdict(self.policy), **{k: v for k, v in asdict(self).items() if k != "policy"}}


def read_sources(manifest_path: Path, tracks_path: Path) -> list[TrackSource]:
    """Manifest rows joined with caption/tags/split from tracks.parquet (by track_id)."""
    for p, stage in ((manifest_path, "separate"), (tracks_path, "prepare")):
        if not p.exists():
            raise FileNotFoundError(f"{p}: not found; run `python -m pipelines.{stage}` first")
    manifest = pq.read_table(manifest_path, columns=["track_id", "path", "seconds"]).to_pylist()
    tracks = {
        r["track_id"]: r
        for r in pq.read_table(
            tracks_path, columns=["track_id", "caption", "split", *TAG_COLUMNS]
        ).to_pylist()
    }
    missing = [m["track_id"] for m in manifest if m["track_id"] not in tracks]
    if missing:
        raise ValueError(
            f"{manifest_path}: {len(missing)} track(s) not in {tracks_path} (e.g. {missing[:3]}); "
            "re-run the separate stage on the current prepared tracks"
        )
    return [
        TrackSource(
            track_id=m["track_id"],
            path=m["path"],
            seconds=float(m["seconds"]),
            caption=tracks[m["track_id"]]["caption"] or "",
            split=tracks[m["track_id"]]["split"] or "",
            **{k: tuple(tracks[m["track_id"]][k] or ()) for k in TAG_COLUMNS},
        )
        for m in manifest
    ]


def main(argv: list[str] | None = None) -> None:
    args = stage_arg_parser("Encode instrumental audio into latent clip shards.").parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    cfg = EncodeConfig.from_section(params.encode)
    codec_params = params.codec.model_dump()
    sources = read_sources(
        Path(params.separate.out_dir) / "manifest.parquet",
        Path(params.data.prepared_dir) / "tracks.parquet",
    )
    plan = plan_clips(sources, cfg.policy, cfg.shard_rows, cfg.batch_size)
    address = resolve_address(params.ray.address)
    with ray_session(
        num_cpus=max(cfg.workers, available_cpus()), num_gpus=cuda_device_count(), address=address
    ):
        import ray

        # the GPUs of the Ray instance (on a cluster: of every node), not of this machine
        gpus = cluster_gpus()
        workers = gpus or cfg.workers
        # GPU actors pick their device from codec params; CPU actors are pinned to the CPU
        codec_factory = functools.partial(build_codec, absolute_paths(codec_params), None if gpus else "cpu")
        if sources:  # the actors read the instrumental audio: it must be on storage every node mounts
            check_visible(sources[0].path, "separate.out_dir")
        meta = ray.get(ray.remote(num_cpus=1)(_describe).remote(codec_factory, cfg.policy.clip_seconds))
        log.info(
            "%d tracks -> %d clips in %d shards; codec %s, latent %s; %d %s actor(s)",
            len(sources),
            sum(len(s) for s in plan.shards),
            len(plan.shards),
            meta.codec,
            meta.latent_shape,
            workers,
            "GPU" if gpus else "CPU",
        )
        summary = run_encode(
            plan, cfg.out_dir, codec_factory, meta, cfg.policy.clip_seconds, workers, use_gpu=bool(gpus)
        )
    write_run_record(
        "encode",
        # the keys this stage reads (encode.stats_path belongs to the stats stage; see dvc.yaml)
        {"codec": codec_params, "encode": cfg.used()},
        codec_settings=meta.settings,
        latent_shape=list(meta.latent_shape),
        tracks=len(sources),
        shards=summary.shards_total,
        shards_written_this_run=summary.shards_written,
        clips_written_this_run=summary.clips_written,
        rejects=summary.rejects,
        startup_seconds=round(summary.startup_s, 2),
        encode_seconds=round(summary.wall_s, 2),
    )
    log.info(
        "encode done: %d shards (%d new), %d rejects",
        summary.shards_total,
        summary.shards_written,
        summary.rejects,
    )


def absolute_paths(codec_params: dict[str, Any]) -> dict[str, Any]:
    """``codec`` params with ``acestep_dir`` made absolute (actors may run in another directory or node)."""
    out = dict(codec_params)
    if out.get("acestep_dir"):
        out["acestep_dir"] = str(Path(out["acestep_dir"]).resolve())
    return out


def _describe(codec_factory, clip_seconds: float):
    """Build the codec once in a Ray worker (not the driver) just to describe it."""
    return describe_codec(codec_factory(), clip_seconds)


if __name__ == "__main__":
    run_main("encode", main)
