"""The single-prompt CLI's editing modes: --continue and --inpaint (docs/generation.md)."""

import re

import numpy as np
import soundfile as sf

from model.audio.io import resample, to_channels
from pipelines.generate import main
from tests.cli import user_error


def _write_tone(path, seconds, sr, channels=2):
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 330 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    audio = np.stack([tone] * channels).astype(np.float32)
    sf.write(str(path), audio.T, sr)
    return sf.read(str(path), dtype="float32", always_2d=True)[0].T  # as stored (16-bit)


def _args(model_dir, tmp_path, out, *extra):
    return [
        "calm piano",
        "-o",
        str(out),
        "--model-dir",
        str(model_dir),
        "--steps",
        "2",
        "--device",
        "cpu",
        "--params",
        str(tmp_path / "absent.yaml"),
        *extra,
    ]


def test_continue_keeps_the_input_extends_it_and_says_where_and_how_long(model_dir, tmp_path, capsys):
    src = tmp_path / "in.wav"
    audio = _write_tone(src, 6.0, 44100)
    out = tmp_path / "out.wav"
    main(_args(model_dir, tmp_path, out, "--continue", str(src), "--seconds", "11"))
    data, sr = sf.read(str(out), dtype="float32", always_2d=True)
    assert (sr, data.shape) == (44100, (11 * 44100, 2))
    np.testing.assert_allclose(data[: 6 * 44100].T, audio, atol=2 / 32768)
    assert np.sqrt(np.mean(data[7 * 44100 :] ** 2)) > 1e-4
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed and " in " in printed and printed.rstrip().endswith(" s")


def test_inpaint_regenerates_only_the_region_and_resamples_other_rates(model_dir, tmp_path):
    src = tmp_path / "in_22k.wav"
    audio = _write_tone(src, 10.0, 22050, channels=1)
    out = tmp_path / "out.wav"
    main(_args(model_dir, tmp_path, out, "--inpaint", str(src), "--region", "4.0:6.5", "--repeats", "2"))
    data, sr = sf.read(str(out), dtype="float32", always_2d=True)
    assert (sr, data.shape) == (44100, (10 * 44100, 2))
    expected = to_channels(resample(audio, 22050, 44100), 2)
    np.testing.assert_allclose(data[: 4 * 44100].T, expected[:, : 4 * 44100], atol=2 / 32768)
    np.testing.assert_allclose(data[int(6.5 * 44100) :].T, expected[:, int(6.5 * 44100) :], atol=2 / 32768)
    inside = slice(int(4.5 * 44100), 6 * 44100)
    assert not np.allclose(data[inside].T, expected[:, inside], atol=1e-2)


def test_region_outside_the_audio_is_refused_with_the_length(model_dir, tmp_path, capsys):
    src = tmp_path / "in.wav"
    _write_tone(src, 8.0, 44100)
    assert re.search(
        r"ends after the input, which is 8\.000 s long",
        user_error(
            capsys,
            main,
            _args(model_dir, tmp_path, tmp_path / "o.wav", "--inpaint", str(src), "--region", "7:9"),
        ),
    )
    assert re.search(
        "START:END",
        user_error(
            capsys,
            main,
            _args(model_dir, tmp_path, tmp_path / "o.wav", "--inpaint", str(src), "--region", "seven"),
        ),
    )
    assert re.search(
        "needs --region",
        user_error(capsys, main, _args(model_dir, tmp_path, tmp_path / "o.wav", "--inpaint", str(src))),
    )
    assert not (tmp_path / "o.wav").exists()


def test_unreadable_input_names_the_file(model_dir, tmp_path, capsys):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    assert re.search(
        r"cannot read --inpaint .*broken\.wav",
        user_error(
            capsys,
            main,
            _args(model_dir, tmp_path, tmp_path / "o.wav", "--inpaint", str(bad), "--region", "0:1"),
        ),
    )
    assert re.search(
        r"cannot read --continue .*missing\.wav",
        user_error(
            capsys,
            main,
            _args(model_dir, tmp_path, tmp_path / "o.wav", "--continue", str(tmp_path / "missing.wav")),
        ),
    )


def test_continue_needs_a_longer_total(model_dir, tmp_path, capsys):
    src = tmp_path / "in.wav"
    _write_tone(src, 12.0, 44100)
    assert re.search(
        "not longer than the input",
        user_error(
            capsys,
            main,
            _args(model_dir, tmp_path, tmp_path / "o.wav", "--continue", str(src), "--seconds", "11"),
        ),
    )
