"""Stage `prepare`: a Jamendo-format dataset -> data/prepared/tracks.parquet (+ rejects; run record in provenance/).

``data.source: synthetic`` generates the built-in dataset into ``<prepared_dir>/synthetic/`` first;
``data.source: jamendo`` reads a local MTG-Jamendo download (``data.jamendo.*``). Both go through the same
reader (model.datasets.jamendo) and table builder (model.datasets.catalog).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from model.datasets.catalog import JamendoSource, build_tables
from model.datasets.synthetic import SyntheticConfig, generate_dataset
from model.runtime.atomic_io import write_parquet_atomic
from model.runtime.errors import InputError
from pipelines.common.cli import run_main
from pipelines.common.logs import setup_logging
from pipelines.common.params import ParamsError, ParamsSchema, config_of, load_params, stage_arg_parser
from pipelines.common.provenance import write_run_record
from pipelines.common.schema import JamendoSection

log = logging.getLogger("pipelines.prepare")

SOURCES = ("synthetic", "jamendo")
_JAMENDO_HELP = {
    "audio_root": "the folder holding the NN/ audio folders unpacked by the dataset's "
    "scripts/download/download.py --dataset raw_30s --type audio (or audio-low) <dir> --unpack",
    "metadata_tsv": "the tag file of the mtg-jamendo-dataset repository, e.g. data/autotagging.tsv "
    "(= raw_30s_cleantags_50artists.tsv)",
    "split_dir": "a split folder of the mtg-jamendo-dataset repository, e.g. data/splits/split-0",
}


def jamendo_source(section: JamendoSection) -> JamendoSource:
    """The JamendoSource named by params ``data.jamendo``; errors say which key to set and to what."""
    values = {}
    for key, help_text in _JAMENDO_HELP.items():
        value = getattr(section, key).strip()
        if not value:
            raise ParamsError(
                f"params.yaml: data.jamendo.{key} is empty; set it to {help_text} (see docs/stages/prepare.md)"
            )
        path = Path(value)
        exists = path.is_dir() if key != "metadata_tsv" else path.is_file()
        if not exists:
            raise ParamsError(
                f"params.yaml: data.jamendo.{key} = {value!r} does not exist; it should be {help_text}"
            )
        values[key] = path
    return JamendoSource(subset=section.subset, **values)


def prepare(params: ParamsSchema) -> Path:
    """Run the stage on loaded params; returns the path of its run record (``pipelines.common.provenance``)."""
    started = time.monotonic()
    data = params.data
    prepared_dir = Path(data.prepared_dir)
    strict = True
    extra: dict[str, Any] = {}
    if data.source == "synthetic":
        cfg = config_of(SyntheticConfig, data.synthetic)
        layout = generate_dataset(prepared_dir / "synthetic", cfg)
        source = JamendoSource(layout.audio_root, layout.metadata_tsv, layout.split_dir, layout.subset)
    elif data.source == "jamendo":
        source = jamendo_source(data.jamendo)
        strict = data.jamendo.strict
    else:
        raise ParamsError(f"params.yaml: data.source must be one of {list(SOURCES)}, got {data.source!r}")
    tables = build_tables(source, caption_seed=data.caption_seed, strict=strict)
    if tables.tracks.num_rows == 0:
        reasons = tables.rejects.to_pylist()[:5]
        raise InputError(
            f"no usable tracks in {source}; first rejects: {reasons} (see docs/stages/prepare.md)"
        )
    write_parquet_atomic(prepared_dir / "tracks.parquet", tables.tracks)
    write_parquet_atomic(prepared_dir / "rejects.parquet", tables.rejects)
    splits = tables.tracks.column("split").to_pylist()
    extra["counts"] = {
        "tracks": tables.tracks.num_rows,
        "rejects": tables.rejects.num_rows,
        **{split: splits.count(split) for split in ("train", "validation", "test")},
    }
    extra["source"] = {k: str(v) for k, v in vars(source).items()}
    extra["seconds"] = round(time.monotonic() - started, 2)
    record = write_run_record("prepare", {"data": data.model_dump()}, **extra)
    log.info("prepared %s in %.1f s: %s", prepared_dir / "tracks.parquet", extra["seconds"], extra["counts"])
    return record


def main(argv: list[str] | None = None) -> None:
    args = stage_arg_parser("Prepare the track table from synthetic or MTG-Jamendo data.").parse_args(argv)
    setup_logging()
    prepare(load_params(args.params))


if __name__ == "__main__":
    run_main("prepare", main)
