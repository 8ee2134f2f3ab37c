"""Audio I/O: decode wav/flac/mp3, resample, channel mapping, crop/pad, and clear errors on bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from model.audio.io import (
    AudioDecodeError,
    audio_info,
    crop_or_pad,
    load_audio,
    resample,
    to_channels,
    write_audio,
)

SR = 44100


def tone(freq: float = 440.0, seconds: float = 1.0, sr: int = SR, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([mono * (1.0 - 0.5 * c) for c in range(channels)]).astype(np.float32)


def dominant_frequency(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


@pytest.mark.parametrize(("suffix", "tol"), [(".wav", 1e-4), (".flac", 1e-4), (".mp3", 0.05)])
def test_decodes_each_format(tmp_path, suffix, tol):
    audio = tone(seconds=1.0)
    path = tmp_path / f"x{suffix}"
    if suffix == ".mp3":
        sf.write(str(path), audio.T, SR, format="MP3")
    else:
        write_audio(path, audio, SR)
    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (SR, 2) and info.duration == pytest.approx(1.0, abs=0.03)
    out, sr = load_audio(path)
    assert sr == SR and out.dtype == np.float32 and out.shape[0] == 2
    n = min(out.shape[1], audio.shape[1])
    if suffix == ".mp3":  # lossy: compare level and pitch, not samples
        assert np.sqrt(np.mean(out[0] ** 2)) == pytest.approx(np.sqrt(np.mean(audio[0] ** 2)), rel=tol)
        assert dominant_frequency(out[0], sr) == pytest.approx(440.0, abs=2.0)
    else:
        assert np.abs(out[:, :n] - audio[:, :n]).max() < tol


def test_window_resample_and_channels(tmp_path):
    path = tmp_path / "x.flac"
    write_audio(path, tone(seconds=2.0), SR)
    part, sr = load_audio(path, offset_s=0.5, duration_s=1.0)
    assert part.shape == (2, SR)
    down, sr = load_audio(path, sample_rate=22050, channels=1)
    assert sr == 22050 and down.shape == (1, 44100)
    assert dominant_frequency(down[0], sr) == pytest.approx(440.0, abs=1.0)
    assert resample(tone(seconds=0.5), SR, 48000).shape == (2, 24000)


def test_to_channels_and_crop_or_pad():
    stereo = np.stack([np.ones(4, np.float32), np.zeros(4, np.float32)])
    assert np.allclose(to_channels(stereo, 1), 0.5)
    assert np.array_equal(to_channels(stereo[:1], 2), np.stack([stereo[0], stereo[0]]))
    with pytest.raises(ValueError, match="cannot map 2 channels to 3"):
        to_channels(stereo, 3)
    assert crop_or_pad(stereo, 2).shape == (2, 2)
    padded = crop_or_pad(stereo, 6)
    assert padded.shape == (2, 6) and np.all(padded[:, 4:] == 0) and np.array_equal(padded[:, :4], stereo)


def test_bad_files_raise_audio_decode_error(tmp_path):
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(empty)
    with pytest.raises(AudioDecodeError, match="does not exist"):
        audio_info(tmp_path / "missing.flac")
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(AudioDecodeError) as info:
        load_audio(garbage)
    assert info.value.path == str(garbage)

    good = tmp_path / "good.mp3"
    sf.write(str(good), tone(seconds=3.0).T, SR, format="MP3")
    data = good.read_bytes()
    for fraction in (0.5, 0.1, 0.01):
        cut = tmp_path / f"cut-{fraction}.mp3"
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(AudioDecodeError):
            load_audio(cut)
    with pytest.raises(ValueError, match="non-finite"):
        write_audio(tmp_path / "nan.wav", np.full((1, 10), np.nan, np.float32), SR)


def test_written_wav_has_no_timestamped_chunk(tmp_path):
    """libsndfile adds a PEAK chunk holding the write time to float WAVs; ours are PCM: fmt and data only."""
    path = tmp_path / "x.wav"
    write_audio(path, np.full((2, 441), 0.25, np.float32), 44100)
    data, chunks, pos = path.read_bytes(), [], 12
    while pos < len(data):
        chunks.append(data[pos : pos + 4])
        pos += 8 + int.from_bytes(data[pos + 4 : pos + 8], "little")
    assert chunks == [b"fmt ", b"data"]
