"""Stage `prepare`: a dataset -> data/prepared/tracks.parquet (+ rejects; run record in provenance/).

``data.source: synthetic`` generates the built-in dataset into ``<prepared_dir>/synthetic/`` first;
``data.source: jamendo`` reads a local MTG-Jamendo download (``data.jamendo.*``). Both go through the same
reader (model.datasets.jamendo) and table builder (model.datasets.catalog). ``data.source: folder`` reads a folder
of your own audio with captions (``data.folder.*``, model.datasets.folder) into the same tables.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from model.datasets.catalog import JamendoSource, PreparedTables, build_tables
from model.datasets.folder import FolderConfig, build_folder_tables
from model.datasets.synthetic import SyntheticConfig, generate_dataset
from model.runtime.atomic_io import write_parquet_atomic
from model.runtime.errors import InputError
from pipelines.common.cli import run_main
from pipelines.common.logs import setup_logging
from pipelines.common.params import ParamsError, ParamsSchema, config_of, load_params, stage_arg_parser
from pipelines.common.provenance import write_run_record
from pipelines.common.schema import JamendoSection

log = logging.getLogger("pipelines.prepare")

SOURCES = ("synthetic", "jamendo", "folder")
_JAMENDO_HELP = {
    "audio_root": "the folder holding the NN/ audio folders unpacked by the dataset's "
    "scripts/download/download.py --dataset raw_30s --type audio (or audio-low) <dir> --unpack",
    "metadata_tsv": "the tag file of the mtg-jamendo-dataset repository, e.g. data/autotagging.tsv "
    "(= raw_30s_cleantags_50artists.tsv)",
    "split_dir": "a split folder of the mtg-jamendo-dataset repository, e.g. data/splits/split-0",
}

_EMPTY_SPLIT = {
    "validation": "training logs no validation loss",
    "test": "the built-in prompt set (generate.prompts: builtin) needs test tracks; raise "
    "data.folder.test_share or give generate.prompts a prompt file",
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
    extra: dict[str, Any] = {}
    source: Any
    tables: PreparedTables
    if data.source == "synthetic":
        cfg = config_of(SyntheticConfig, data.synthetic)
        layout = generate_dataset(prepared_dir / "synthetic", cfg)
        source = JamendoSource(layout.audio_root, layout.metadata_tsv, layout.split_dir, layout.subset)
        tables = build_tables(source, caption_seed=data.caption_seed)
    elif data.source == "jamendo":
        source = jamendo_source(data.jamendo)
        tables = build_tables(source, caption_seed=data.caption_seed, strict=data.jamendo.strict)
    elif data.source == "folder":
        source = config_of(FolderConfig, data.folder)
        tables = build_folder_tables(source, caption_seed=data.caption_seed)
    else:
        raise ParamsError(f"params.yaml: data.source must be one of {list(SOURCES)}, got {data.source!r}")
    if tables.tracks.num_rows == 0:
        reasons = tables.rejects.to_pylist()[:5]
        raise InputError(
            f"no usable tracks in {source}; first rejects: {reasons} (see docs/stages/prepare.md)"
        )
    write_parquet_atomic(prepared_dir / "tracks.parquet", tables.tracks)
    write_parquet_atomic(prepared_dir / "rejects.parquet", tables.rejects)
    splits = tables.tracks.column("split").to_pylist()
    for split in ("validation", "test"):
        if split not in splits:
            log.warning("no %s tracks: %s", split, _EMPTY_SPLIT[split])
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
    args = stage_arg_parser("Prepare the track table from synthetic, MTG-Jamendo or folder data.").parse_args(
        argv
    )
    setup_logging()
    prepare(load_params(args.params))


if __name__ == "__main__":
    run_main("prepare", main)
