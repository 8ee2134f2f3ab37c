"""Figures of the listening report without a plotting library: spectrogram PNGs and line plots as inline SVG.

- ``spectrogram_image(audio (C, N), sr) -> (H, W) float in [0, 1]``: log-mel of the scored first 10 s, low
  frequencies at the bottom, an 80 dB range under the clip's own peak;
- ``png_bytes(rgb (H, W, 3) uint8)``: a PNG (8-bit RGB, zlib) written with the standard library alone;
- ``colourise(image (H, W))``: the magma-like palette below -> (H, W, 3) uint8;
- ``read_training_curves(live_dir)``: DVCLive's ``plots/metrics/**/*.tsv`` -> ``{name: (steps, values)}``;
- ``svg_line_plot(curves)``: an axis-labelled SVG of those curves (log y when they span > 1 decade).
"""

from __future__ import annotations

import functools
import html
import logging
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from model.audio.mel import mel_filterbank

log = logging.getLogger(__name__)

N_FFT, HOP, N_MELS, DYNAMIC_RANGE_DB = 2048, 1470, 80, 80.0  # 44.1 kHz: 30 columns per second
# a few stops of a dark-to-bright perceptual palette (black, purple, red, orange, pale yellow)
_STOPS = np.array(
    [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]], np.float64
)
CURVE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def spectrogram_image(audio: np.ndarray, sample_rate: int, seconds: float = 10.0) -> np.ndarray:
    """audio (C, N) -> (N_MELS, frames) log-mel in [0, 1] of the first ``seconds``, row 0 = highest band."""
    mono = torch.from_numpy(
        np.ascontiguousarray(audio[:, : int(seconds * sample_rate)].mean(axis=0), np.float32)
    )
    if mono.numel() < N_FFT:
        mono = torch.nn.functional.pad(mono, (0, N_FFT - mono.numel()))
    spec = (
        torch.stft(
            mono, N_FFT, hop_length=HOP, window=torch.hann_window(N_FFT), center=False, return_complex=True
        )
        .abs()
        .pow(2)
    )
    mel = _filterbank(sample_rate) @ spec
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))
    db = (db - db.max() + DYNAMIC_RANGE_DB) / DYNAMIC_RANGE_DB
    return db.clamp(0.0, 1.0).flip(0).numpy()


@functools.lru_cache(maxsize=4)
def _filterbank(sample_rate: int) -> torch.Tensor:
    return mel_filterbank(sample_rate, N_FFT, N_MELS, f_min=20.0, dtype=torch.float32)


def colourise(image: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 through the palette (linear between its stops)."""
    pos = np.clip(image, 0.0, 1.0) * (len(_STOPS) - 1)
    lo = np.minimum(pos.astype(np.int64), len(_STOPS) - 2)
    frac = (pos - lo)[..., None]
    return np.rint(_STOPS[lo] * (1.0 - frac) + _STOPS[lo + 1] * frac).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> the bytes of a PNG file (colour type 2, bit depth 8, filter 0 on every row)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"png_bytes expects (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 3))
        + chunk(b"IEND", b"")
    )


def read_training_curves(live_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``<live_dir>/plots/metrics/<group>/<name>.tsv`` (DVCLive: ``step<TAB>name`` rows) -> {"group/name": (x, y)}.

    Only loss curves are read (``*loss*``); a missing directory gives {} (the report says so).
    """
    root = Path(live_dir) / "plots" / "metrics"
    curves = {}
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        name = path.relative_to(root).with_suffix("").as_posix()
        if "loss" not in name:
            continue
        try:
            table = np.loadtxt(path, delimiter="\t", skiprows=1, ndmin=2)
        except ValueError as exc:
            log.warning("%s: not a DVCLive step/value table (%s); left out of the report", path, exc)
            continue
        if table.size:
            curves[name] = (table[:, 0], table[:, -1])
    return curves


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    step *= next(m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= n)
    return [v for v in np.arange(math.ceil(lo / step) * step, hi + step * 1e-9, step)]


def svg_line_plot(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    width: int = 640,
    height: int = 260,
    x_label: str = "step",
    label: str = "training loss",
) -> str:
    """An inline ``<svg>`` with one polyline per curve, axes, ticks and a legend; log y over > 1 decade."""
    if not curves:
        return ""
    xs = np.concatenate([x for x, _ in curves.values()])
    ys = np.concatenate([y for _, y in curves.values()])
    ys_ok = ys[np.isfinite(ys)]
    log_y = bool(ys_ok.size and ys_ok.min() > 0 and ys_ok.max() / ys_ok.min() > 10)
    fy = np.log10 if log_y else (lambda v: v)
    x0, x1 = float(xs.min()), float(max(xs.max(), xs.min() + 1))
    y0, y1 = float(fy(ys_ok.min())), float(fy(ys_ok.max()))
    y1 = y1 if y1 > y0 else y0 + 1.0
    left, right, top, bottom = 56, 150, 10, 36
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + (1.0 - (y - y0) / (y1 - y0)) * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(label)}">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
    ]
    for t in _ticks(x0, x1):
        parts.append(
            f'<text x="{px(t):.1f}" y="{height - 20}" font-size="11" text-anchor="middle">{t:g}</text>'
        )
    for t in _ticks(y0, y1):
        label = f"{10**t:.3g}" if log_y else f"{t:.3g}"
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{py(t) + 4:.1f}" font-size="11" text-anchor="end">{label}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 4}" font-size="12" text-anchor="middle">'
        f"{html.escape(x_label)}{' (log y)' if log_y else ''}</text>"
    )
    for k, (name, (x, y)) in enumerate(curves.items()):
        colour = CURVE_COLOURS[k % len(CURVE_COLOURS)]
        ok = np.isfinite(y) & ((y > 0) if log_y else True)
        points = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x[ok], fy(y[ok]), strict=True))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        ly = top + 14 + 16 * k
        parts.append(
            f'<line x1="{left + pw + 8}" x2="{left + pw + 24}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{colour}" stroke-width="2"/><text x="{left + pw + 28}" y="{ly}" font-size="11">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
