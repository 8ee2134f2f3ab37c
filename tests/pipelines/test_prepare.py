"""Stage `prepare` on the built-in data and on a tiny MTG-Jamendo-shaped download."""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml

from model.datasets.captions import humanise
from pipelines.prepare import main
from tests.cli import user_error

HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"
COLUMNS = ["track_id", "audio_path", "duration", "genre", "instrument", "mood", "caption", "split"]


def write_params(tmp_path, data: dict) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": data}))
    return str(path)


def test_synthetic_source(tmp_path, run_records):
    prepared = tmp_path / "prepared"
    params = write_params(
        tmp_path,
        {
            "source": "synthetic",
            "prepared_dir": str(prepared),
            "caption_seed": 0,
            "synthetic": {"n_tracks": 10, "seconds": 2.0, "seed": 3, "audio_format": "flac", "workers": 1},
        },
    )
    main(["--params", params])
    table = pq.read_table(prepared / "tracks.parquet")
    assert table.column_names == COLUMNS
    assert (
        pa.types.is_list(table.schema.field("genre").type)
        and table.schema.field("mood").type.value_type == pa.string()
    )
    frame = pl.read_parquet(prepared / "tracks.parquet")
    assert frame.height == 10 and frame["duration"].dtype == pl.Float64
    assert frame["split"].value_counts().sort("split").rows() == [
        ("test", 2),
        ("train", 7),
        ("validation", 1),
    ]
    assert frame["duration"].to_list() == [2.0] * 10
    for row in frame.iter_rows(named=True):
        assert row["audio_path"].startswith(str(prepared / "synthetic" / "audio"))
        assert sf.info(row["audio_path"]).channels == 2
        assert len(row["genre"]) == 1 and len(row["mood"]) == 1 and 1 <= len(row["instrument"]) <= 3
        assert humanise(row["genre"][0]) in row["caption"] and row["mood"][0] in row["caption"].lower()
    assert pq.read_table(prepared / "rejects.parquet").num_rows == 0
    assert not (prepared / "provenance.json").exists()  # run facts stay out of the (hashed) output
    record = json.loads((run_records / "prepare.json").read_text())
    assert record["stage"] == "prepare" and record["counts"]["tracks"] == 10
    assert record["params"]["data"]["synthetic"]["seed"] == 3


def make_download(tmp_path):
    """A miniature MTG-Jamendo layout: repo metadata + split-0 + an audio root with good and bad files."""
    rows = [
        "track_0000214\tartist_000014\talbum_000031\t14/214.mp3\t124.6\tgenre---punkrock\tinstrument---guitar",
        "track_0000382\tartist_000020\talbum_000046\t82/382.mp3\t211.1\tgenre---classical\tinstrument---voice"
        "\tmood/theme---calm",
        "track_0000759\tartist_000103\talbum_000124\t59/759.mp3\t379.8\tgenre---pop",
        "track_0000773\tartist_000104\talbum_000126\t73/773.mp3\t275.3\tgenre---electronic",
        "track_0000808\tartist_000114\talbum_000131\t08/808.mp3\t265.6\tgenre---pop\tgenre---rock",
    ]
    repo = tmp_path / "mtg-jamendo-dataset" / "data"
    split = repo / "splits" / "split-0"
    split.mkdir(parents=True)
    (repo / "autotagging.tsv").write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode())
    for name, chosen in (("train", rows[:3]), ("validation", rows[3:4]), ("test", rows[4:])):
        (split / f"autotagging-{name}.tsv").write_bytes(("\r\n".join([HEADER, *chosen]) + "\r\n").encode())
    audio = tmp_path / "download"
    wave = (0.3 * np.sin(2 * np.pi * 330 * np.arange(SR := 44100) / SR)).astype(np.float32)
    for rel in ("14/214.mp3", "82/382.low.mp3", "08/808.mp3"):
        (audio / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(audio / rel), np.stack([wave, wave], 1), SR, format="MP3")
    (audio / "73").mkdir()
    (audio / "73" / "773.mp3").write_bytes(b"")  # empty download: rejected; 59/759.mp3 missing: rejected
    return {"audio_root": str(audio), "metadata_tsv": str(repo / "autotagging.tsv"), "split_dir": str(split)}


def test_jamendo_source_with_rejects(tmp_path):
    prepared = tmp_path / "prepared"
    params = write_params(
        tmp_path,
        {
            "source": "jamendo",
            "prepared_dir": str(prepared),
            "caption_seed": 1,
            "jamendo": make_download(tmp_path),
        },
    )
    main(["--params", params])
    frame = pl.read_parquet(prepared / "tracks.parquet")
    assert frame["track_id"].to_list() == ["track_0000214", "track_0000382", "track_0000808"]
    assert frame["split"].to_list() == ["train", "train", "test"]
    row = frame.row(1, named=True)
    assert row["audio_path"].endswith("82/382.low.mp3")
    assert row["genre"] == ["classical"] and row["instrument"] == ["voice"] and row["mood"] == ["calm"]
    assert row["duration"] == pytest.approx(1.0, abs=0.05)  # measured from the audio, not the TSV's 211.1
    assert frame.row(2, named=True)["genre"] == ["pop", "rock"]
    rejects = pl.read_parquet(prepared / "rejects.parquet").sort("track_id")
    assert rejects["track_id"].to_list() == ["track_0000759", "track_0000773"]
    reasons = rejects["reason"].to_list()
    assert "not found" in reasons[0] and "empty" in reasons[1]
    assert not (prepared / "synthetic").exists()


def test_missing_jamendo_params_say_what_to_set(tmp_path, capsys):
    params = write_params(
        tmp_path,
        {
            "source": "jamendo",
            "prepared_dir": str(tmp_path / "p"),
            "jamendo": {"audio_root": "", "metadata_tsv": "", "split_dir": ""},
        },
    )
    err = user_error(capsys, main, ["--params", params])
    assert "data.jamendo.audio_root is empty" in err and "download.py" in err
    download = make_download(tmp_path)
    params = write_params(
        tmp_path,
        {
            "source": "jamendo",
            "prepared_dir": str(tmp_path / "p"),
            "jamendo": {**download, "split_dir": str(tmp_path / "nope")},
        },
    )
    assert re.search(
        "data.jamendo.split_dir .* does not exist", user_error(capsys, main, ["--params", params])
    )
    params = write_params(tmp_path, {"source": "fma", "prepared_dir": str(tmp_path / "p")})
    assert "data.source must be one of" in user_error(capsys, main, ["--params", params])


def test_malformed_metadata_names_file_and_line(tmp_path, capsys):
    download = make_download(tmp_path)
    tsv = download["metadata_tsv"]
    with open(tsv, "ab") as fh:
        fh.write(b"track_0000900\tartist_000001\talbum_000001\t00/900.mp3\tabc\tgenre---rock\r\n")
    params = write_params(
        tmp_path, {"source": "jamendo", "prepared_dir": str(tmp_path / "p"), "jamendo": download}
    )
    assert "autotagging.tsv:7: DURATION 'abc' is not a number" in user_error(
        capsys, main, ["--params", params]
    )
    params = write_params(
        tmp_path,
        {"source": "jamendo", "prepared_dir": str(tmp_path / "p"), "jamendo": {**download, "strict": False}},
    )
    main(["--params", params])
    rejects = pl.read_parquet(tmp_path / "p" / "rejects.parquet")
    assert "track_0000900" in rejects["track_id"].to_list()


def _folder(tmp_path):
    root = tmp_path / "my music"
    (root / "live").mkdir(parents=True)
    t = np.arange(22050 * 2) / 22050
    for i, name in enumerate(("live/a.wav", "b.flac", "c.wav")):
        sf.write(str(root / name), 0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t), 22050)
    (root / "broken.wav").write_bytes(b"not audio at all")
    (root / "captions.csv").write_text(
        "path,caption,tags\nlive/a.wav,A live take.,genre---rock\nb.flac,A flac.,\nc.wav,C.,\nbroken.wav,Broken.,\n"
    )
    return root


def test_folder_source_writes_tables_and_rejects(tmp_path, run_records):
    root, prepared = _folder(tmp_path), tmp_path / "prepared"
    folder = {"root": str(root), "validation_share": 0.0, "test_share": 0.0}
    main(
        [
            "--params",
            write_params(tmp_path, {"source": "folder", "prepared_dir": str(prepared), "folder": folder}),
        ]
    )
    tracks = pl.read_parquet(prepared / "tracks.parquet")
    assert tracks.columns == COLUMNS and tracks.height == 3 and set(tracks["split"]) == {"train"}
    rejects = pl.read_parquet(prepared / "rejects.parquet").to_dicts()
    assert [r["audio_path"] for r in rejects] == [str(root / "broken.wav")]
    assert rejects[0]["reason"].startswith("unreadable:")
    assert not (prepared / "provenance.json").exists()
    prov = json.loads((run_records / "prepare.json").read_text())
    assert prov["counts"] == {"tracks": 3, "rejects": 1, "train": 3, "validation": 0, "test": 0}


def test_folder_source_refuses_a_caption_less_file_in_one_line(tmp_path, capsys):
    root = _folder(tmp_path)
    sf.write(str(root / "live" / "new.wav"), np.full(22050, 0.1), 22050)
    params = write_params(tmp_path, {"source": "folder", "folder": {"root": str(root)}})
    err = user_error(capsys, main, ["--params", params])
    assert "live/new.wav" in err and "no caption" in err and "caption_from_tags" in err
