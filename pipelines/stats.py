"""Stage ``stats``: per-channel latent mean/variance over the train split -> ``encode.stats_path`` (JSON).

Reads the shards in ``encode.out_dir``; writes ``{"count": frames, "mean": [D], "var": [D], "split": "train",
"codec": {...}}`` (float64, streaming Chan/Welford merge over valid frames only); run record ``provenance/stats.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from model.data.shards import shard_metadata
from model.data.stats import shard_stats
from model.runtime.atomic_io import write_json_atomic
from pipelines.common.cli import run_main
from pipelines.common.logs import setup_logging
from pipelines.common.params import load_params, stage_arg_parser
from pipelines.common.provenance import write_run_record

log = logging.getLogger("pipelines.stats")

STATS_SPLIT = "train"


def main(argv: list[str] | None = None) -> None:
    args = stage_arg_parser("Per-channel latent mean/variance over the training split.").parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    shard_dir = params.encode.out_dir
    stats_path = Path(params.encode.stats_path)
    meta = shard_metadata(shard_dir)
    acc = shard_stats(shard_dir, split=STATS_SPLIT)
    codec = {
        "name": meta.codec,
        "settings": meta.settings,
        "latent_shape": list(meta.latent_shape),
        "frame_rate": meta.frame_rate,
    }
    write_json_atomic(stats_path, acc.to_dict(split=STATS_SPLIT, codec=codec))
    write_run_record(
        "stats", {"encode": {"out_dir": shard_dir, "stats_path": str(stats_path)}}, frames=acc.count
    )
    log.info(
        "%s: %d %s frames, mean of means %.4f, mean var %.4f",
        stats_path,
        acc.count,
        STATS_SPLIT,
        float(acc.mean.mean()),
        float(acc.var.mean()),
    )


if __name__ == "__main__":
    run_main("stats", main)
