"""Report figures: the stdlib PNG writer round-trips, spectrograms are sane, loss curves read and plot."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from evaluation.report.figures import (
    colourise,
    png_bytes,
    read_training_curves,
    spectrogram_image,
    svg_line_plot,
)


def _decode_png(data: bytes) -> np.ndarray:
    """An independent minimal reader (filter 0, RGB8): checks signature, chunk CRCs and returns (H, W, 3)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + 3 * width)
    assert np.all(raw[:, 0] == 0)
    return raw[:, 1:].reshape(height, width, 3)


def test_png_round_trips():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 13, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_decode_png(png_bytes(rgb)), rgb)
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(rgb.astype(np.float32))


def test_colourise_is_monotone_in_brightness():
    rgb = colourise(np.linspace(0, 1, 50)[None, :]).astype(float)
    brightness = rgb[0] @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(brightness) > -1e-9) and rgb.min() >= 0 and rgb.max() <= 255


def test_spectrogram_puts_a_low_tone_at_the_bottom():
    sr = 44100
    t = np.arange(sr * 2) / sr
    image = spectrogram_image(np.stack([np.sin(2 * np.pi * 200 * t)] * 2).astype(np.float32), sr)
    assert image.min() >= 0 and image.max() == pytest.approx(1.0)
    loudest_row = int(image.mean(axis=1).argmax())
    assert loudest_row > image.shape[0] * 3 // 4  # row 0 is the highest band
    short = spectrogram_image(
        np.zeros((1, 100), np.float32), sr
    )  # shorter than one FFT: one column, no crash
    assert short.shape[1] == 1


def test_training_curves_read_and_plot(tmp_path):
    metrics = tmp_path / "plots" / "metrics"
    (metrics / "train").mkdir(parents=True)
    (metrics / "train" / "loss.tsv").write_text("step\tloss\n10\t3.0\n20\t0.2\n30\t0.1\n")
    (metrics / "train" / "lr.tsv").write_text("step\tlr\n10\t0.001\n")
    curves = read_training_curves(tmp_path)
    assert list(curves) == ["train/loss"]
    np.testing.assert_array_equal(curves["train/loss"][0], [10, 20, 30])
    svg = svg_line_plot(curves)
    assert svg.startswith("<svg") and svg.count("<polyline") == 1 and "log y" in svg  # spans > 1 decade
    assert read_training_curves(tmp_path / "absent") == {} and svg_line_plot({}) == ""
