"""How audible are the seams of continuation and inpainting? Spectral flux across the boundaries vs elsewhere.

Inputs: the first ``--clips`` test-split tracks (instrumental audio, first 10 s) of ``--root``; caption = the
track's own caption. Edits with the trained model (``--model-dir``): inpaint 4.0–6.5 s, and continue the first
6 s to 10 s. Settings compared: no smoothing (1 pass per step, no crossfade), re-noising only (3 passes per step,
RePaint-style), crossfade only (0.25 s), and both.

Measure: log-magnitude STFT of the mono output (n_fft 2048, hop 512 at 44.1 kHz); spectral flux per frame =
mean over bins of the positive change from the previous frame. Seam score = the largest flux within ±3 frames
(±35 ms) of a boundary divided by the median flux of the whole clip: ≈ 1–3 for ordinary music, higher for a
click or a jump in timbre. The same score of the untouched input at the same times is the baseline (music has
onsets too). Scored twice: on the output (input audio spliced with the decode) and on the decode alone (the
model's own transition across the boundary, which re-noising can change and a crossfade cannot).
Writes bench/results/seams.json.

    PYTHONPATH=. .venv/bin/python bench/bench_seams.py --root . --clips 6
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.metrics.audio_sets import read_dataset_split  # noqa: E402
from model.audio.io import load_audio  # noqa: E402
from model.flow.editing import MusicEditor  # noqa: E402
from model.flow.sampling import SamplerConfig  # noqa: E402
from model.flow.text_to_music import OUTPUT_SAMPLE_RATE, TextToMusic  # noqa: E402
from pipelines.common.params import load_params  # noqa: E402

N_FFT, HOP, WINDOW = 2048, 512, 3
SETTINGS = {
    "none": {"repeats": 1, "crossfade_s": 0.0},
    "renoise3": {"repeats": 3, "crossfade_s": 0.0},
    "crossfade": {"repeats": 1, "crossfade_s": 0.25},
    "crossfade+renoise3": {"repeats": 3, "crossfade_s": 0.25},
}


def flux(audio: np.ndarray) -> np.ndarray:
    """(C, N) at 44.1 kHz -> (frames,) spectral flux of the mono mix (frame f centred on sample f·HOP)."""
    mono = torch.from_numpy(np.ascontiguousarray(audio.mean(axis=0)))
    spec = torch.stft(mono, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, return_complex=True)
    logmag = torch.log(spec.abs() + 1e-4)
    diff = (logmag[:, 1:] - logmag[:, :-1]).clamp_min(0).mean(dim=0)
    return torch.cat([diff[:1], diff]).numpy()


def seam_score(audio: np.ndarray, boundary_s: float) -> float:
    f = flux(audio)
    centre = round(boundary_s * OUTPUT_SAMPLE_RATE / HOP)
    return float(f[max(0, centre - WINDOW) : centre + WINDOW + 1].max() / np.median(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--steps", type=int, default=None, help="default: generate.steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = ROOT / "bench/results/seams.json"
    os.chdir(args.root)
    params = load_params("params.yaml")
    model_dir = args.model_dir or params.train.out_dir
    tracks = str(Path(params.data.prepared_dir) / "tracks.parquet")
    instrumental = str(Path(params.separate.out_dir) / "manifest.parquet")
    sampler = SamplerConfig(
        steps=args.steps or params.generate.steps,
        cfg_scale=params.generate.cfg_scale,
        method=params.generate.method,
    )
    if not (Path(model_dir) / "model.safetensors").is_file() or not Path(instrumental).is_file():
        print(
            f"bench_seams: needs a trained model ({model_dir}) and the pipeline's data; run `make repro` first"
        )
        return
    editor = MusicEditor(TextToMusic.from_dir(model_dir, "cpu", "fp32"))
    clips = read_dataset_split(tracks, instrumental, "test")[: args.clips]
    rows = []
    start = time.perf_counter()
    for clip in clips:
        audio, sr = load_audio(clip.path, sample_rate=OUTPUT_SAMPLE_RATE, channels=2, duration_s=10.0)
        base = {
            "inpaint": [seam_score(audio, 4.0), seam_score(audio, 6.5)],
            "continue": [seam_score(audio, 6.0)],
        }
        for name, opts in SETTINGS.items():
            gen = torch.Generator().manual_seed(0)
            inp = editor.inpaint(clip.caption, audio, sr, 4.0, 6.5, sampler, gen, **opts)
            gen = torch.Generator().manual_seed(0)
            cont = editor.continue_audio(clip.caption, audio[:, : 6 * sr], sr, 10.0, sampler, gen, **opts)
            rows.append(
                {
                    "track": clip.track_id,
                    "setting": name,
                    **opts,
                    "inpaint": [seam_score(inp.audio, 4.0), seam_score(inp.audio, 6.5)],
                    "continue": [seam_score(cont.audio, 6.0)],
                    "decoded_inpaint": [seam_score(inp.decoded, 4.0), seam_score(inp.decoded, 6.5)],
                    "decoded_continue": [seam_score(cont.decoded, 6.0)],
                    "input_inpaint": base["inpaint"],
                    "input_continue": base["continue"],
                }
            )
            print(rows[-1], flush=True)
    summary = {}
    for name in SETTINGS:
        mine = [r for r in rows if r["setting"] == name]
        summary[name] = {
            key + "_seam_median": float(np.median([v for r in mine for v in r[key]]))
            for key in ("inpaint", "continue", "decoded_inpaint", "decoded_continue")
        }
    summary["input_same_times"] = {
        "inpaint_seam_median": float(
            np.median([v for r in rows[:: len(SETTINGS)] for v in r["input_inpaint"]])
        ),
        "continue_seam_median": float(
            np.median([v for r in rows[:: len(SETTINGS)] for v in r["input_continue"]])
        ),
    }
    result = {
        "what": "seam score = max spectral flux within ±3 frames of a boundary / median flux of the clip",
        "model_dir": str(Path(model_dir).resolve()),
        "sampler": sampler.__dict__,
        "n_clips": len(clips),
        "wall_s": round(time.perf_counter() - start, 1),
        "summary": summary,
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, s in summary.items():
        print(f"{name:<20} " + "  ".join(f"{k.replace('_seam_median', '')} {v:.2f}" for k, v in s.items()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
