"""Cost of the listening report (``evaluation.report.page.write_report``) at the pipeline's size: 100 prompts × 2 seeds.

Fixture: 200 synthetic 10 s 44.1 kHz stereo WAVs (tone + noise) and a per-clip table of the evaluate stage's shape.
Measures, over ``REPEATS`` runs, the median wall time of the whole report (spectrogram PNGs + index.html) and the
size of what it writes. Target (issue 14): seconds, so that ``dvc repro`` stays fast. The load average at start is
recorded beside the figures (the machine is shared). Writes bench/results/report.json.

    .venv/bin/python bench/bench_report.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.report.page import write_report  # noqa: E402
from model.audio.io import write_audio  # noqa: E402

N_PROMPTS, N_SEEDS, SECONDS, SR, REPEATS = 100, 2, 10.0, 44100, 3


def fixture(root: Path) -> pa.Table:
    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * SR)) / SR
    rows = []
    for p in range(N_PROMPTS):
        for s in range(N_SEEDS):
            tone = 0.2 * np.sin(2 * np.pi * (110 + 10 * p + s) * t) + 0.02 * rng.standard_normal(t.size)
            path = root / "generated" / f"p{p:03d}" / f"seed-{s}.wav"
            write_audio(path, np.stack([tone, tone]).astype(np.float32), SR)
            rows.append(
                {
                    "prompt_id": f"p{p:03d}",
                    "seed": s,
                    "path": str(path),
                    "caption": f"caption {p}",
                    "fad_distance": float(rng.random()),
                    "text_audio": float(rng.random()),
                    "ccs": float(rng.random()),
                    "concepts_present": ["genre:rock"],
                    "concepts_missing": ["mood:calm"],
                    "chosen": s == 0,
                }
            )
    return pa.Table.from_pylist(rows)


def main() -> None:
    torch.set_num_threads(1)  # as the evaluate stage on the offline path
    load = os.getloadavg()[0]
    metrics = {
        "fad": 1.0,
        "clap": 0.1,
        "ccs": 0.5,
        "ccs_margin": 0.2,
        "first_seed": {"fad": 1.0, "clap": 0.1, "ccs": 0.5, "ccs_margin": 0.2},
        "all_seeds": {"fad": 1.0, "clap": 0.1, "ccs": 0.5, "ccs_margin": 0.2},
    }
    curves = {"train/loss": (np.arange(10, 1510, 10.0), 1 / np.arange(1, 151.0))}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        table = fixture(root)
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            write_report(root / "reports", metrics, {}, table, curves)
            times.append(time.perf_counter() - start)
        written = sum(p.stat().st_size for p in (root / "reports").rglob("*") if p.is_file())
    result = {
        "clips": N_PROMPTS * N_SEEDS,
        "median_s": statistics.median(times),
        "times_s": times,
        "bytes_written": written,
        "load_average_at_start": load,
        "threads": 1,
        "python": platform.python_version(),
    }
    out = Path(__file__).resolve().parent / "results" / "report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
