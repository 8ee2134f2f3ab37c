"""The studio without a browser: the command line shown under a take parses back to the same request, the
spectrogram marks the kept span, uploads and limits are checked with readable messages, and a missing model stops
the start with the command to run first."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evaluation.report.figures import HOP, N_FFT
from model.flow.render import Edit, RenderRequest
from model.flow.sampling import SamplerConfig
from pipelines.generate import arg_parser, request_of
from pipelines.studio.__main__ import main as studio_main
from pipelines.studio.app import MAX_SEED, pick_seed
from pipelines.studio.service import (
    BAND_ROWS,
    KEPT_RGB,
    Limits,
    Studio,
    StudioError,
    cli_command,
    spectrogram_rgb,
)
from pipelines.studio.uploads import UploadError, check_upload
from tests.cli import user_error
from tests.defaults import params


def _tone(path: Path, seconds: float, sr: int = 44100, channels: int = 2) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), np.stack([0.3 * np.sin(2 * np.pi * 220 * t)] * channels).T, sr)
    return path


@pytest.mark.parametrize("kind", ["text", "continue", "inpaint"])
def test_the_shown_command_parses_back_to_the_same_request(kind, tmp_path):
    source = str(_tone(tmp_path / "in put.wav", 12.0))  # a space: the command must quote it
    edit = {
        "text": None,
        "continue": Edit("continue", source, None, 2, 0.1, "take 3"),
        "inpaint": Edit("inpaint", source, (4.25, 6.5), 1, 0.25, "the upload"),
    }[kind]
    seconds = 10.0 if edit is None or edit.kind == "inpaint" else 21.5
    request = RenderRequest(
        'a "quoted" caption; with $chars', seconds, SamplerConfig(7, 2.25, "heun"), 4321, edit
    )
    argv = shlex.split(cli_command(request, tmp_path / "model", "cpu", "take.wav"))
    assert argv[:3] == ["python", "-m", "pipelines.generate"] and argv[-2:] == ["-o", "take.wav"]
    args = arg_parser().parse_args(argv[3:])
    parsed, settings = request_of(args, params().generate)
    assert (args.model_dir, args.device) == (str(tmp_path / "model"), "cpu")
    label = {"text": None, "continue": "--continue", "inpaint": "--inpaint"}[kind]
    expected = (
        request
        if edit is None
        else RenderRequest(**{**request.__dict__, "edit": Edit(**{**edit.__dict__, "label": label})})
    )
    assert parsed == expected
    threaded = shlex.split(cli_command(request, tmp_path / "model", "cpu", "take.wav", threads=1))
    assert threaded == ["OMP_NUM_THREADS=1", *argv]


def test_spectrogram_marks_the_kept_span_only_for_edits():
    audio = (0.1 * np.random.default_rng(0).standard_normal((2, 4 * 44100))).astype(np.float32)
    plain = spectrogram_rgb(audio, np.ones(audio.shape[-1], bool))
    columns = 1 + (audio.shape[-1] - N_FFT) // HOP
    assert plain.shape == (160, columns, 3)
    generated = np.arange(audio.shape[-1]) >= 3 * 44100  # the first 3 s kept (a continuation)
    marked = spectrogram_rgb(audio, generated)
    assert marked.shape == (160 + BAND_ROWS, columns, 3)
    band = marked[:BAND_ROWS]
    kept_columns = np.flatnonzero((band[0] == KEPT_RGB).all(axis=-1))
    edge = int(round((3 * 44100 - N_FFT // 2) / HOP))
    assert kept_columns.max() == pytest.approx(edge, abs=1) and kept_columns.min() == 0
    assert (marked[:, edge + np.array([-1, 0, 1])] == 255).all(axis=(0, 2)).any()  # the white boundary line
    np.testing.assert_array_equal(marked[BAND_ROWS:, : edge - 1], plain[:, : edge - 1])


def test_uploads_are_checked_with_a_message_naming_the_file(tmp_path):
    assert check_upload(_tone(tmp_path / "ok.flac", 2.0, 22050, 1), 60.0).sample_rate == 22050
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    cases = {
        (tmp_path / "notes.txt"): r"notes\.txt: not an audio format .* upload WAV, FLAC, OGG or MP3",
        bad: r"broken\.wav cannot be read as audio \(.*broken\.wav",
        _tone(
            tmp_path / "low.wav", 2.0, 4000
        ): r"low\.wav has a sample rate of 4000 Hz; upload audio at 8–192 kHz",
        _tone(tmp_path / "surround.wav", 2.0, 44100, 6): r"surround\.wav has 6 channels",
        _tone(tmp_path / "short.wav", 0.5): r"short\.wav is 0\.50 s long; upload at least 1 s",
        _tone(
            tmp_path / "long.wav", 61.0, 8000
        ): r"long\.wav is 61\.0 s long; .* up to 60 s \(--max-seconds\)",
    }
    (tmp_path / "notes.txt").write_text("la la")
    for path, message in cases.items():
        with pytest.raises(UploadError, match=message) as info:
            check_upload(path, 60.0)
        assert str(tmp_path) not in str(info.value)  # the server's paths are not shown


def test_limits_and_seeds_are_enforced(tmp_path, studio_model):
    studio = Studio(params().generate, [], Limits(30.0, 2, 1, 4), tmp_path)
    with pytest.raises(
        StudioError, match=r"40 s is longer than this studio renders per clip \(30 s, --max-seconds\)"
    ):
        studio.settings(40.0, 4, 1.5, "ab2")
    settings = studio.settings(20.0, 3, 2.0, "euler")
    assert (settings.seconds, settings.steps, settings.cfg_scale, settings.method) == (20.0, 3, 2.0, "euler")
    with pytest.raises(Exception, match="generate.method"):
        studio.settings(20.0, 3, 2.0, "rk4")
    with pytest.raises(StudioError, match="1 to 2 variations, not 3"):
        studio.render("start", "x", settings, 0, 3)
    with pytest.raises(Exception, match="prompt is empty"):  # refused before any model is loaded
        studio.render("start", "  ", settings, 0, 1)
    assert pick_seed("fixed", 7.0) == 7 and 0 <= pick_seed("random", None) <= MAX_SEED
    with pytest.raises(StudioError, match="whole number"):
        pick_seed("fixed", MAX_SEED + 1)


def test_missing_model_stops_the_start_with_the_command_to_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = user_error(capsys, studio_main, ["--params", "absent.yaml"])
    assert "no trained model in models/final" in err and "run `make repro` first" in err
    err = user_error(capsys, studio_main, ["--model-dir", str(tmp_path / "nope"), "--params", "absent.yaml"])
    assert "nope" in err and "--model-dir" in err
