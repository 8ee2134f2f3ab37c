"""Stage ``pack``: latent shards -> the packed, memory-mappable store that training reads (bounded memory).

Reads the shards in ``encode.out_dir``; writes ``pack.out_dir`` (``store.json``, ``<split>/latents.npy``
(frames, D) float16, ``<split>/clips.parquet``; layout in ``model.data.store``) for the train and validation
splits, streaming shard by shard (run record ``provenance/pack.json``). The store directory is replaced
atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

from model.data.store import pack_store
from pipelines.common.cli import run_main
from pipelines.common.logs import setup_logging
from pipelines.common.params import load_params, stage_arg_parser
from pipelines.common.provenance import write_run_record

log = logging.getLogger("pipelines.pack")


def main(argv: list[str] | None = None) -> None:
    args = stage_arg_parser("Pack the latent shards into a memory-mappable store for training.").parse_args(
        argv
    )
    setup_logging()
    params = load_params(args.params)
    shards_dir = params.encode.out_dir
    out_dir = Path(params.pack.out_dir)
    description = pack_store(shards_dir, out_dir)
    write_run_record(
        "pack",
        {"encode": {"out_dir": shards_dir}, "pack": params.pack.model_dump()},
        splits=description["splits"],
        shards=len(description["shards"]),
    )
    log.info("%s: %s", out_dir, description["splits"])


if __name__ == "__main__":
    run_main("pack", main)
