"""Generation length vs training crop: generate at the crop length and keep the head, or generate the output length?

The paper profile trains on 323-frame (30 s) crops and outputs 10 s: a ratio of 3. This study asks the same
question of a trained model at its own scale: with ``crop = train.frames`` of the model and ``output = crop / 3``
(rounded to whole frames), compare

  direct     sample ``output`` frames and decode them;
  crop_cut   sample ``crop`` frames (the length the model was trained on), decode, keep the first ``output``.

Both arms use the same prompts, seeds (``noise_generator(prompt_id, seed)``), sampler and decoder. The score
is the local FAD of ``evaluation/``'s weight-free spectral descriptor, computed on exactly the first ``output``
seconds of each clip (no zero-padding to the 10 s of the challenge window) against the same excerpt of the
test split's instrumental audio, per seed and over both seeds. Lower is better.

Run (on the embedded pipeline's outputs):
  .venv/bin/python bench/length_study.py --root /tmp/repro1 [--n-prompts 50] -> prints a table, writes
  bench/results/length_study.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.challenge.prompts import load_prompts  # noqa: E402
from evaluation.metrics import spectral_features  # noqa: E402
from evaluation.metrics.audio_sets import read_dataset_split  # noqa: E402
from evaluation.metrics.excerpt import scored_excerpt  # noqa: E402
from evaluation.metrics.fad import EmbeddingStats, fad_between  # noqa: E402
from model.audio.io import load_audio  # noqa: E402
from model.flow.sampling import SamplerConfig, noise_generator  # noqa: E402
from model.flow.text_to_music import TextToMusic  # noqa: E402

OUTPUT_RATE = 44100
RATIO = 3  # paper: 323-frame crops, 10 s (108 frames) generated


def descriptor(audio: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """The spectral descriptor of exactly the first ``seconds`` of (C, N) audio."""
    head = audio[:, : int(round(seconds * sample_rate))]
    mono = scored_excerpt(
        head.mean(axis=0, keepdims=True), sample_rate, spectral_features.SAMPLE_RATE, seconds
    )[0]
    return spectral_features.clip_descriptor(
        mono, spectral_features.stereo_width(head), spectral_features.SAMPLE_RATE
    )


def generate_arm(
    engine: TextToMusic,
    prompts,
    seeds: int,
    seconds: float,
    keep_seconds: float,
    sampler: SamplerConfig,
    batch: int,
    desc: str,
) -> dict[int, list[np.ndarray]]:
    """Descriptors of the first ``keep_seconds`` of clips generated at ``seconds``, per seed index."""
    out: dict[int, list[np.ndarray]] = {k: [] for k in range(seeds)}
    jobs = [(p, k) for k in range(seeds) for p in prompts]
    for start in tqdm(range(0, len(jobs), batch), desc=desc, unit="batch"):
        chunk = jobs[start : start + batch]
        audio = engine.generate(
            [p.caption for p, _ in chunk],
            [noise_generator(p.prompt_id, k) for p, k in chunk],
            seconds,
            sampler,
        )
        for (_, k), wav in zip(chunk, audio, strict=True):
            out[k].append(descriptor(wav, OUTPUT_RATE, keep_seconds))
    return out


def paired_bootstrap(arms: dict[str, dict[int, list[np.ndarray]]], ref: EmbeddingStats, n: int) -> dict:
    """FAD(direct) - FAD(crop_cut) over prompt sets resampled with replacement (the same draw for both arms)."""
    rng = np.random.default_rng(0)
    stacked = {a: np.stack([np.stack(per_seed[k]) for k in sorted(per_seed)]) for a, per_seed in arms.items()}
    n_prompts = stacked["direct"].shape[1]
    diffs = []
    for _ in range(n):
        pick = rng.integers(0, n_prompts, n_prompts)
        fads = {
            a: fad_between(EmbeddingStats.from_embeddings(x[:, pick].reshape(-1, x.shape[-1])), ref)
            for a, x in stacked.items()
        }
        diffs.append(fads["direct"] - fads["crop_cut"])
    diffs = np.asarray(diffs)
    return {
        "n": n,
        "median_diff": float(np.median(diffs)),
        "p05": float(np.quantile(diffs, 0.05)),
        "p95": float(np.quantile(diffs, 0.95)),
        "direct_better": float(np.mean(diffs < 0)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", default=".", help="pipeline checkout holding models/final, generated/, data/"
    )
    parser.add_argument("--model-dir", default="models/final")
    parser.add_argument(
        "--n-prompts", type=int, default=0, help="first N prompts of generated/prompts.jsonl (0 = all)"
    )
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg-scale", type=float, default=3.5)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--bootstrap", type=int, default=500, help="paired bootstrap draws over prompts")
    parser.add_argument("--out", default="bench/results/length_study.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(args.root)
    engine = TextToMusic.from_dir(root / args.model_dir, "cpu", "fp32")
    # the crop the model was trained on: the train stage's run record (pipelines/common/provenance.py)
    crop = int(json.loads((root / "provenance" / "train.json").read_text())["params"]["train"]["frames"])
    frame_rate = engine.codec.frame_rate
    output_frames = round(crop / RATIO)
    crop_s, output_s = crop / frame_rate, output_frames / frame_rate
    prompts = load_prompts(root / "generated" / "prompts.jsonl")
    prompts = prompts[: args.n_prompts] if args.n_prompts else prompts
    sampler = SamplerConfig(steps=args.steps, cfg_scale=args.cfg_scale, method="euler")
    ref_paths = [
        c.path
        for c in read_dataset_split(
            root / "data/prepared/tracks.parquet", root / "data/instrumental/manifest.parquet", "test"
        )
    ]
    ref = []
    for path in ref_paths:
        audio, sr = load_audio(path if Path(path).is_absolute() else root / path, duration_s=output_s)
        ref.append(descriptor(audio, sr, output_s))
    ref_stats = EmbeddingStats.from_embeddings(np.stack(ref))
    started = time.perf_counter()
    arms = {
        "direct": generate_arm(
            engine, prompts, args.seeds, output_s, output_s, sampler, args.batch, "direct"
        ),
        "crop_cut": generate_arm(
            engine, prompts, args.seeds, crop_s, output_s, sampler, args.batch, "crop_cut"
        ),
    }
    result = {
        "crop_frames": crop,
        "output_frames": output_frames,
        "crop_s": crop_s,
        "output_s": output_s,
        "n_prompts": len(prompts),
        "seeds": args.seeds,
        "steps": args.steps,
        "cfg_scale": args.cfg_scale,
        "n_reference": len(ref),
        "seconds": None,
        "fad": {},
    }
    print(
        f"crop {crop} frames ({crop_s:.2f} s), output {output_frames} frames ({output_s:.2f} s); "
        f"{len(prompts)} prompts x {args.seeds} seeds; FAD (spectral, first {output_s:.2f} s), lower is better"
    )
    print(f"{'arm':>9} " + " ".join(f"{'seed ' + str(k):>8}" for k in range(args.seeds)) + f" {'pooled':>8}")
    for name, per_seed in arms.items():
        row = {
            f"seed_{k}": fad_between(EmbeddingStats.from_embeddings(np.stack(d)), ref_stats)
            for k, d in per_seed.items()
        }
        pooled = np.stack([d for k in per_seed for d in per_seed[k]])
        row["pooled"] = fad_between(EmbeddingStats.from_embeddings(pooled), ref_stats)
        result["fad"][name] = row
        print(f"{name:>9} " + " ".join(f"{v:8.3f}" for v in row.values()))
    result["bootstrap"] = paired_bootstrap(arms, ref_stats, args.bootstrap)
    b = result["bootstrap"]
    print(
        f"paired bootstrap over prompts ({args.bootstrap}x, both seeds): FAD(direct) - FAD(crop_cut) "
        f"median {b['median_diff']:.3f}, 90% interval [{b['p05']:.3f}, {b['p95']:.3f}], "
        f"direct better in {100 * b['direct_better']:.0f}%"
    )
    result["seconds"] = time.perf_counter() - started
    result["winner"] = min(result["fad"], key=lambda a: result["fad"][a]["pooled"])
    result["winner_every_seed"] = all(
        result["fad"][result["winner"]][f"seed_{k}"]
        <= min(result["fad"][a][f"seed_{k}"] for a in result["fad"])
        for k in range(args.seeds)
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"winner: {result['winner']} (on every seed: {result['winner_every_seed']}) -> {out}")
    return result


if __name__ == "__main__":
    main()
