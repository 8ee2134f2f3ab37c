"""Stage ``separate``: prepared tracks -> instrumental audio + ``manifest.parquet`` + ``rejects.parquet``.

Reads ``data/prepared/tracks.parquet`` (under ``data.prepared_dir``), the ``separate:`` params and ``ray.address``
(a Ray cluster to run on, see docs/scaling-out.md); writes
``<separate.out_dir>/audio/<track_id>.<audio_format>`` (htdemucs), ``manifest.parquet`` (track_id, path, seconds,
status) and ``rejects.parquet`` (track_id, audio_path, reason); the run record goes to ``provenance/separate.json``.
Rerunning skips finished files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from model.runtime.atomic_io import write_parquet_atomic
from model.separation.instrumental import SeparationResult, TrackAudio, run_separation
from model.separation.vocal_remover import SeparationConfig
from pipelines.common.cli import run_main
from pipelines.common.logs import setup_logging
from pipelines.common.params import config_of, load_params, stage_arg_parser
from pipelines.common.provenance import write_run_record

log = logging.getLogger("pipelines.separate")

MANIFEST_SCHEMA = pa.schema(
    [("track_id", pa.string()), ("path", pa.string()), ("seconds", pa.float64()), ("status", pa.string())]
)
REJECTS_SCHEMA = pa.schema([("track_id", pa.string()), ("audio_path", pa.string()), ("reason", pa.string())])


def read_tracks(path: Path) -> list[TrackAudio]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: prepared tracks not found; run `python -m pipelines.prepare` first")
    table = pq.read_table(path, columns=["track_id", "audio_path"])
    return [
        TrackAudio(t, a)
        for t, a in zip(table["track_id"].to_pylist(), table["audio_path"].to_pylist(), strict=True)
    ]


def results_tables(results: list[SeparationResult]) -> tuple[pa.Table, pa.Table]:
    """(manifest, rejects) tables from per-track results."""
    ok = [r for r in results if not r.rejected]
    bad = [r for r in results if r.rejected]
    manifest = pa.table(
        {
            "track_id": [r.track_id for r in ok],
            "path": [r.path for r in ok],
            "seconds": [float(r.seconds) for r in ok],
            "status": [r.status for r in ok],
        },
        schema=MANIFEST_SCHEMA,
    )
    rejects = pa.table(
        {
            "track_id": [r.track_id for r in bad],
            "audio_path": [r.audio_path for r in bad],
            "reason": [r.reason for r in bad],
        },
        schema=REJECTS_SCHEMA,
    )
    return manifest, rejects


def main(argv: list[str] | None = None) -> None:
    args = stage_arg_parser(
        "Remove vocals from every prepared track (demucs) or pass them through."
    ).parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    cfg = config_of(SeparationConfig, params.separate)
    tracks_path = Path(params.data.prepared_dir) / "tracks.parquet"
    tracks = read_tracks(tracks_path)
    out_dir = Path(cfg.out_dir)
    log.info("%d tracks, model %s -> %s", len(tracks), cfg.model, out_dir)
    results = run_separation(tracks, cfg, address=params.ray.address)
    manifest, rejects = results_tables(results)
    # written inside this persisted output by earlier versions: it would keep the folder's hash run-specific
    (out_dir / "provenance.json").unlink(missing_ok=True)
    write_parquet_atomic(out_dir / "manifest.parquet", manifest)
    write_parquet_atomic(out_dir / "rejects.parquet", rejects)
    reused = sum(r.reused for r in results)
    write_run_record(
        "separate",
        {"separate": params.separate.model_dump()},
        tracks=len(tracks),
        written=manifest.num_rows,
        rejected=rejects.num_rows,
        reused=reused,
        total_seconds=float(sum(manifest["seconds"].to_pylist())),
    )
    log.info("%d instrumental tracks (%d reused), %d rejects", manifest.num_rows, reused, rejects.num_rows)


if __name__ == "__main__":
    run_main("separate", main)
