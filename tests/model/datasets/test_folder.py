"""A folder of the user's own audio as a dataset: formats, captions, tags, hash splits, rejects and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from model.datasets.catalog import REJECTS_SCHEMA, TRACKS_SCHEMA
from model.datasets.folder import (
    FolderConfig,
    FolderError,
    build_folder_tables,
    folder_track_id,
    hash_split,
    parse_tags,
)
from tests.defaults import config

SR = 22050
FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "ogg": ("OGG", "VORBIS"),
}


def tone(seconds: float, freq: float, level: float = 0.3, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    mono = level * np.sin(2 * np.pi * freq * t)
    return np.stack([mono] * channels, axis=1).astype(np.float32)


def write(root, rel: str, audio: np.ndarray) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt, subtype = FORMATS[path.suffix[1:]]
    sf.write(str(path), audio, SR, format=fmt, subtype=subtype)


def folder_cfg(root, **values) -> FolderConfig:
    return config(FolderConfig, "data.folder", root=str(root), **values)


def rows(table) -> dict[str, dict]:
    return {r["audio_path"]: r for r in table.to_pylist()}


@pytest.fixture
def music(tmp_path):
    """Four formats in nested folders; captions.csv with tags for three, a sidecar .txt for the fourth."""
    root = tmp_path / "music"
    write(root, "a/one.wav", tone(1.5, 220))
    write(root, "a/deep/two.flac", tone(1.5, 330))
    write(root, "three.mp3", tone(1.5, 440))
    write(root, "b/four.ogg", tone(1.5, 550, channels=1))
    (root / "captions.csv").write_text(
        "path,caption,tags\n"
        'a/one.wav,A calm piano piece.,"genre---classical instrument---piano mood/theme---calm"\n'
        "a/deep/two.flac,Fast rock drums.,genre---rock;instrument---drums\n"
        "./three.mp3,Dark ambient pad.,\n"
    )
    (root / "b" / "four.txt").write_text("  A folk guitar tune.\n")
    return root


def test_every_format_nested_folders_captions_tags_and_sidecar(music):
    tables = build_folder_tables(folder_cfg(music))
    assert tables.tracks.schema == TRACKS_SCHEMA and tables.rejects.schema == REJECTS_SCHEMA
    assert tables.rejects.num_rows == 0
    got = rows(tables.tracks)
    assert set(got) == {str(music / p) for p in ("a/one.wav", "a/deep/two.flac", "three.mp3", "b/four.ogg")}
    one = got[str(music / "a/one.wav")]
    assert one["caption"] == "A calm piano piece." and one["genre"] == ["classical"]
    assert one["instrument"] == ["piano"] and one["mood"] == ["calm"]
    two = got[str(music / "a/deep/two.flac")]
    assert two["genre"] == ["rock"] and two["instrument"] == ["drums"] and two["mood"] == []
    assert got[str(music / "b/four.ogg")]["caption"] == "A folk guitar tune."
    for rel, row in zip(
        ("a/one.wav", "a/deep/two.flac", "three.mp3", "b/four.ogg"),
        [got[str(music / p)] for p in ("a/one.wav", "a/deep/two.flac", "three.mp3", "b/four.ogg")],
        strict=True,
    ):
        assert row["track_id"] == folder_track_id(rel) and row["split"] == hash_split(rel, 0.1, 0.1)
        assert row["duration"] == pytest.approx(1.5, abs=0.06)  # mp3/ogg decoders pad a little


def test_bad_files_are_rejected_with_reasons(music):
    (music / "corrupt.wav").write_bytes(b"RIFF" + bytes(range(200)))
    write(music, "short.wav", tone(0.3, 300))
    write(music, "silent.flac", np.zeros((SR * 2, 2), np.float32))
    stored, _ = sf.read(str(music / "a/one.wav"), dtype="int16")
    (music / "copy").mkdir()
    sf.write(str(music / "copy/one.flac"), stored, SR, subtype="PCM_16")  # a lossless conversion of a/one.wav
    for name in ("corrupt", "short", "silent"):
        (music / f"{name}.txt").write_text("a caption")
    (music / "copy" / "one.txt").write_text("a caption")
    with (music / "captions.csv").open("a") as fh:
        fh.write("gone.wav,Listed but missing.,\n")
    tables = build_folder_tables(folder_cfg(music))
    reasons = {r["audio_path"]: r["reason"] for r in tables.rejects.to_pylist()}
    assert reasons[str(music / "corrupt.wav")].startswith("unreadable:")
    assert reasons[str(music / "short.wav")] == "too short: 0.30 s < data.folder.min_seconds 1"
    assert reasons[str(music / "silent.flac")] == "silent: RMS -inf dBFS < data.folder.silence_dbfs -60"
    assert reasons[str(music / "copy/one.flac")] == "duplicate content of a/one.wav"
    assert (
        "listed in" in reasons[str(music / "gone.wav")]
        and "no such audio file" in reasons[str(music / "gone.wav")]
    )
    assert tables.tracks.num_rows == 4  # the good files are all kept


def test_a_caption_less_file_is_refused_naming_it(music):
    write(music, "x/untitled.wav", tone(1.2, 600))
    with pytest.raises(
        FolderError, match=r"1 audio file\(s\) have no caption: x/untitled.wav.*caption_from_tags"
    ):
        build_folder_tables(folder_cfg(music))


def test_caption_from_tags_builds_one_and_refuses_files_without_tags(music):
    write(music, "tagged.wav", tone(1.2, 600))
    write(music, "bare.wav", tone(1.2, 700))
    with (music / "captions.csv").open("a") as fh:
        fh.write("tagged.wav,,genre---jazz instrument---piano mood---happy\n")
    with pytest.raises(FolderError, match=r"bare.wav.*have none"):
        build_folder_tables(folder_cfg(music, caption_from_tags=True))
    (music / "bare.wav").unlink()
    got = rows(build_folder_tables(folder_cfg(music, caption_from_tags=True)).tracks)
    text = got[str(music / "tagged.wav")]["caption"]
    assert "jazz" in text and "piano" in text and "happy" in text


def test_jsonl_captions_with_category_objects(tmp_path):
    root = tmp_path / "m"
    write(root, "x.wav", tone(1.2, 200))
    write(root, "y.flac", tone(1.2, 250))
    records = [
        {
            "path": "x.wav",
            "caption": "Sad strings.",
            "tags": {"mood/theme": ["sad"], "instrument": "strings"},
        },
        {"path": "y.flac", "caption": "Electronic beat.", "tags": ["genre---electronic"]},
    ]
    (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    got = rows(build_folder_tables(folder_cfg(root, validation_share=0.0, test_share=0.0)).tracks)
    assert got[str(root / "x.wav")]["mood"] == ["sad"] and got[str(root / "x.wav")]["instrument"] == [
        "strings"
    ]
    assert got[str(root / "y.flac")]["genre"] == ["electronic"]
    assert {r["split"] for r in got.values()} == {"train"}


def test_malformed_captions_name_file_and_line(tmp_path):
    root = tmp_path / "m"
    write(root, "x.wav", tone(1.2, 200))
    (root / "captions.csv").write_text("path,caption,tags\nx.wav,Fine.,style---rock\n")
    with pytest.raises(FolderError, match=r"captions.csv:2: unknown tag category 'style'"):
        build_folder_tables(folder_cfg(root))
    (root / "captions.csv").write_text("file,text\nx.wav,Fine.\n")
    with pytest.raises(
        FolderError, match=r"captions.csv:1: the header must name the columns path and caption"
    ):
        build_folder_tables(folder_cfg(root))
    (root / "captions.csv").write_text("path,caption\nx.wav,One.\nx.wav,Two.\n")
    with pytest.raises(FolderError, match=r"captions.csv:3: x.wav is listed twice"):
        build_folder_tables(folder_cfg(root))
    with pytest.raises(FolderError, match="data.folder.captions = 'other.csv'"):
        build_folder_tables(folder_cfg(root, captions="other.csv"))
    with pytest.raises(FolderError, match="data.folder.root = .* is not a folder"):
        build_folder_tables(folder_cfg(tmp_path / "nowhere"))


def test_split_is_a_function_of_the_path_with_the_asked_shares():
    names = [f"album/{i}.wav" for i in range(4000)]
    splits = [hash_split(n, 0.1, 0.2) for n in names]
    shares = {s: splits.count(s) / len(names) for s in ("train", "validation", "test")}
    assert shares["test"] == pytest.approx(0.2, abs=0.02) and shares["validation"] == pytest.approx(
        0.1, abs=0.02
    )
    assert [hash_split(n, 0.1, 0.2) for n in names[:50]] == splits[
        :50
    ]  # no state: adding files moves nothing
    assert len({folder_track_id(n) for n in names}) == len(names)


def test_parse_tags_forms():
    assert parse_tags("genre---rock, instrument---piano|mood---calm", "x") == {
        "genre": ("rock",),
        "instrument": ("piano",),
        "mood": ("calm",),
    }
    assert parse_tags({"genre": ["rock", "rock"]}, "x")["genre"] == ("rock",)
    with pytest.raises(FolderError, match="x: tag 'rock' is not of the form category---name"):
        parse_tags("rock", "x")


def test_shares_must_leave_a_training_split(tmp_path):
    from pipelines.common.params import ParamsError

    with pytest.raises(ParamsError, match="validation_share \\+ data.folder.test_share"):
        folder_cfg(tmp_path, validation_share=0.5, test_share=0.5)
