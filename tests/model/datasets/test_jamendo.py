"""The MTG-Jamendo metadata reader on rows in the real official format."""

from __future__ import annotations

import logging

import pytest

from model.datasets.jamendo import (
    JamendoFormatError,
    JamendoTrack,
    audio_relpath,
    read_splits,
    read_tsv,
    resolve_audio,
    split_files,
    write_tsv,
)

HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"
# Rows copied in form from the dataset's data/autotagging.tsv (ids, paths, durations, tag columns).
ROWS = [
    "track_0000214\tartist_000014\talbum_000031\t14/214.mp3\t124.6\tgenre---punkrock",
    "track_0000382\tartist_000020\talbum_000046\t82/382.mp3\t211.1\tgenre---classical\tinstrument---voice",
    "track_0008559\tartist_001301\talbum_001290\t59/8559.mp3\t247.1\tgenre---easylistening\tgenre---jazz"
    "\tgenre---latin\tgenre---lounge\tinstrument---classicalguitar\tinstrument---doublebass\tinstrument---drums"
    "\tinstrument---guitar",
    "track_0011100\tartist_001576\talbum_001643\t00/11100.mp3\t174.3\tgenre---reggae",
    "track_0016038\tartist_002323\talbum_002275\t38/16038.mp3\t190.0\tgenre---electronic\tgenre---hiphop"
    "\tmood/theme---dark\tmood/theme---dramatic\tmood/theme---epic\tmood/theme---powerful",
]


def write_lines(path, lines, newline="\r\n"):
    path.write_bytes(newline.join(lines).encode() + newline.encode())
    return path


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_reads_official_rows(tmp_path, newline):
    tracks, problems = read_tsv(write_lines(tmp_path / "autotagging.tsv", [HEADER, *ROWS], newline))
    assert problems == []
    assert [t.track_id for t in tracks] == [
        "track_0000214",
        "track_0000382",
        "track_0008559",
        "track_0011100",
        "track_0016038",
    ]
    by_id = {t.track_id: t for t in tracks}
    t = by_id["track_0008559"]
    assert (t.artist_id, t.album_id, t.path, t.duration) == (
        "artist_001301",
        "album_001290",
        "59/8559.mp3",
        247.1,
    )
    assert t.genre == ("easylistening", "jazz", "latin", "lounge")
    assert t.instrument == ("classicalguitar", "doublebass", "drums", "guitar")
    assert t.mood == ()
    m = by_id["track_0016038"]
    assert m.genre == ("electronic", "hiphop")
    assert m.mood == ("dark", "dramatic", "epic", "powerful")
    assert by_id["track_0000382"].instrument == ("voice",)
    assert by_id["track_0011100"].path == "00/11100.mp3"
    # no tag text leaks a carriage return or a category prefix
    assert all("\r" not in x and "---" not in x for tr in tracks for x in tr.genre + tr.instrument + tr.mood)


def test_relpath_matches_official_layout():
    assert audio_relpath("track_0000214") == "14/214.mp3"
    assert audio_relpath("track_0011100") == "00/11100.mp3"
    assert audio_relpath("track_0000808", "low.mp3") == "08/808.low.mp3"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("track_0000214\tartist_000014\talbum_000031\t14/214.mp3\t124.6\tgenres---rock", "unknown category"),
        ("track_0000214\tartist_000014\talbum_000031\t14/214.mp3\t124.6\tmood---happy", "unknown category"),
        ("track_0000214\tartist_000014\talbum_000031\t14/214.mp3\t124.6\trock", "category---name"),
        ("track_0000214\tartist_000014\talbum_000031\t14/214.mp3", "at least 5"),
        ("track_0000214\tartist_000014\talbum_000031\t14/214.mp3\tlong\tgenre---rock", "not a number"),
        ("track_0000214\tartist_000014\talbum_000031\t14/214.mp3\t-3\tgenre---rock", "positive"),
        ("track_0000214\tartist_000014\talbum_000031\t14/214.mp3\tnan\tgenre---rock", "positive"),
        ("track_214\tartist_000014\talbum_000031\t14/214.mp3\t124.6\tgenre---rock", None),
        ("0000214\tartist_000014\talbum_000031\t14/214.mp3\t124.6\tgenre---rock", "TRACK_ID"),
        ("track_0000214\tartist_x\talbum_000031\t14/214.mp3\t124.6\tgenre---rock", "ARTIST_ID"),
        ("track_0000214\tartist_000014\talbum_000031\t15/214.mp3\t124.6\tgenre---rock", "does not belong"),
        ("track_0000214\tartist_000014\talbum_000031\t214.mp3\t124.6\tgenre---rock", "bad PATH"),
        ("track_0000214\tartist_000014\talbum_000031\t14/214.mp3\t124.6\tgenre---", "invalid name"),
        ("track_0000214 artist_000014 album_000031 14/214.mp3 124.6 genre---rock", "at least 5"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, row, reason):
    path = write_lines(
        tmp_path / "bad.tsv", [HEADER, ROWS[0].replace("0000214", "0000314").replace("14/214", "14/314"), row]
    )
    if reason is None:  # short ids are valid Jamendo ids as long as the path agrees
        tracks, _ = read_tsv(path)
        assert tracks[1].track_id == "track_214"
        return
    with pytest.raises(JamendoFormatError) as info:
        read_tsv(path)
    assert info.value.line == 3
    assert str(path) in str(info.value) and reason in str(info.value)


def test_lenient_mode_skips_and_logs_bad_rows(tmp_path, caplog):
    bad = "track_0000999\tartist_000014\talbum_000031\t99/999.mp3\t12.0\tgenre---rock\tfoo---bar"
    path = write_lines(tmp_path / "mixed.tsv", [HEADER, ROWS[0], bad, ROWS[1]])
    with caplog.at_level(logging.WARNING):
        tracks, problems = read_tsv(path, strict=False)
    assert [t.track_id for t in tracks] == ["track_0000214", "track_0000382"]
    assert len(problems) == 1 and problems[0].line == 3 and problems[0].track_id == "track_0000999"
    assert "foo---bar" in problems[0].reason
    assert "mixed.tsv:3" in caplog.text


def test_header_and_duplicates_are_errors(tmp_path):
    with pytest.raises(JamendoFormatError, match=":1: unexpected header"):
        read_tsv(write_lines(tmp_path / "nohdr.tsv", ROWS[:2]))
    with pytest.raises(JamendoFormatError, match=":1: file is empty"):
        read_tsv(write_lines(tmp_path / "empty.tsv", [], ""))
    with pytest.raises(JamendoFormatError, match=r":3: duplicate track_0000214 \(first on line 2\)"):
        read_tsv(write_lines(tmp_path / "dup.tsv", [HEADER, ROWS[0], ROWS[0]]))
    with pytest.raises(FileNotFoundError, match="not found"):
        read_tsv(tmp_path / "missing.tsv")


def test_splits_and_audio_resolution(tmp_path):
    split_dir = tmp_path / "splits" / "split-0"
    split_dir.mkdir(parents=True)
    write_lines(split_dir / "autotagging-train.tsv", [HEADER, ROWS[0], ROWS[1]])
    write_lines(split_dir / "autotagging-validation.tsv", [HEADER, ROWS[2]])
    write_lines(split_dir / "autotagging-test.tsv", [HEADER, ROWS[3]], "\n")
    write_lines(split_dir / "autotagging_moodtheme-train.tsv", [HEADER, ROWS[4]])
    splits, problems = read_splits(split_dir)
    assert problems == []
    assert {k: [t.track_id for t in v] for k, v in splits.items()} == {
        "train": ["track_0000214", "track_0000382"],
        "validation": ["track_0008559"],
        "test": ["track_0011100"],
    }
    with pytest.raises(FileNotFoundError, match="autotagging_moodtheme-validation.tsv"):
        split_files(split_dir, "autotagging_moodtheme")
    write_lines(split_dir / "autotagging-test.tsv", [HEADER, ROWS[0]])
    with pytest.raises(JamendoFormatError, match="in both train and test"):
        read_splits(split_dir)

    root = tmp_path / "audio"
    (root / "14").mkdir(parents=True)
    (root / "82").mkdir()
    (root / "14" / "214.mp3").write_bytes(b"x")
    (root / "82" / "382.low.mp3").write_bytes(b"x")
    assert resolve_audio(root, "14/214.mp3") == root / "14" / "214.mp3"
    assert resolve_audio(root, "82/382.mp3") == root / "82" / "382.low.mp3"
    assert resolve_audio(root, "59/8559.mp3") is None


def test_write_then_read_round_trip(tmp_path):
    tracks, _ = read_tsv(write_lines(tmp_path / "in.tsv", [HEADER, *ROWS]))
    write_tsv(tmp_path / "out.tsv", tracks)
    raw = (tmp_path / "out.tsv").read_bytes()
    assert raw.startswith(HEADER.encode() + b"\r\n") and raw.count(b"\r\n") == len(ROWS) + 1
    again, _ = read_tsv(tmp_path / "out.tsv")
    assert again == tracks
    assert isinstance(again[0], JamendoTrack) and again[2].tags[0] == "genre---easylistening"
