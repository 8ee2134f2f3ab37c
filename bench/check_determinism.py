"""Does the evaluate stage's offline path give the same numbers under other CPU kernel paths and thread counts?

Run in a clone where `make repro` has run (it reads data/prepared, data/instrumental and, if present, generated):

    python bench/check_determinism.py [--root DIR] [--out bench/results/determinism.json] [--configs a,b]

One child process per configuration (the kernel ISA is chosen when torch starts, so only an environment variable
set before the import switches it): the default, 2 threads, ATen's AVX2 and scalar (DEFAULT) kernels, oneDNN capped
at AVX2, MKL capped at AVX2 and MKL's SSE2 path (MKL_CBWR=COMPATIBLE), and a 1e-7 relative perturbation of the
training inputs. Each child trains the tagger and local-clap exactly as the stage does (train split, seed 0) and
reports fingerprints of the inputs and weights, the validation cosine of local-clap, the tagger's validation
judgements and, when generated audio exists, the stage's CLAP score and tagger judgements on it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

CONFIGS = {
    "default": {},
    "threads_2": {"THREADS": "2"},
    "aten_avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "aten_scalar": {"ATEN_CPU_CAPABILITY": "default"},
    "onednn_avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "mkl_avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "mkl_sse2": {"MKL_CBWR": "COMPATIBLE"},
    "inputs_perturbed_1e-7": {"PERTURB": "1e-7"},
}


def fingerprint(array) -> str:
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def child(root: Path) -> dict:
    """The offline path of the evaluate stage on ``root``'s data, under this process's environment."""
    import numpy as np
    import torch

    torch.set_num_threads(int(os.environ.get("THREADS", "1")))  # the stage uses one thread
    from evaluation.metrics.audio_sets import embed_paths, read_dataset_split, read_generated
    from evaluation.metrics.clap_score import (
        LOCAL_CLAP_TEXT,
        LocalClapConfig,
        pooled_text_features,
        text_audio_scores,
        train_local_clap,
    )
    from evaluation.metrics.embedders import SpectralStatsEmbedder
    from evaluation.metrics.offline_models import _tag_key, clip_descriptors
    from evaluation.metrics.spectral_features import judge_features
    from evaluation.metrics.tagger import TaggerConfig, train_tagger
    from model.text import build_text_encoder

    os.chdir(root)
    tracks, instrumental = "data/prepared/tracks.parquet", "data/instrumental/manifest.parquet"
    embedder = SpectralStatsEmbedder()
    train, train_x, _ = clip_descriptors(
        read_dataset_split(tracks, instrumental, "train"), embedder.embed, "train"
    )
    val, val_x, _ = clip_descriptors(
        read_dataset_split(tracks, instrumental, "validation"), embedder.embed, "val"
    )
    encoder = build_text_encoder(LOCAL_CLAP_TEXT)
    text_x = pooled_text_features(encoder, [c.caption for c in train])
    out = {
        "threads": torch.get_num_threads(),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "descriptors": fingerprint(train_x),
        "captions": fingerprint(text_x),
    }
    perturb = float(os.environ.get("PERTURB", "0"))
    if perturb:
        rng = np.random.default_rng(0)
        train_x = train_x * (1 + perturb * rng.standard_normal(train_x.shape))
        text_x = text_x * (1 + perturb * rng.standard_normal(text_x.shape))
    tagger = train_tagger(
        train_x, [c.tags for c in train], val_x, [c.tags for c in val], TaggerConfig(seed=0)
    )
    clap = train_local_clap(
        train_x, text_x, [_tag_key(c.tags) for c in train], LocalClapConfig(seed=0), encoder
    )
    weights = [
        p.detach().double().numpy().ravel()
        for m in (tagger.net, clap.towers)
        for p in m.state_dict().values()
    ]
    out.update(
        {
            "weights": fingerprint(np.concatenate(weights)),
            "tagger_validation_judgements": fingerprint(tagger.present(val_x)),
            "local_clap_validation_cosine": float(
                np.mean(
                    np.sum(clap.audio_vectors(val_x) * clap.text_vectors([c.caption for c in val]), axis=1)
                )
            ),
        }
    )
    if Path("generated/manifest.parquet").is_file():
        prompts, clips = read_generated("generated")
        embedded, _ = embed_paths([c.path for c in clips], {"d": embedder.embed}, 10.0, "generated")
        gen_x = judge_features(np.stack([e.mean(axis=0) for e in embedded["d"]]))
        captions = {p.prompt_id: p.caption for p in prompts}
        out["generated_clap"] = float(
            text_audio_scores(clap, gen_x, [captions[c.prompt_id] for c in clips]).mean()
        )
        out["generated_tagger_judgements"] = fingerprint(tagger.present(gen_x))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="a clone where `make repro` has run")
    parser.add_argument("--out", default="bench/results/determinism.json")
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help="comma-separated subset of the configurations"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = Path(args.root).resolve()
    if args.child:
        print(json.dumps(child(root)))
        return
    if not (root / "data/prepared/tracks.parquet").is_file():
        sys.exit(f"{root}: no data/prepared/tracks.parquet; run `make repro` first or pass --root")
    results = {}
    for name in args.configs.split(","):
        env = CONFIGS[name]
        proc = subprocess.run(
            [sys.executable, __file__, "--root", str(root), "--child"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        results[name] = {"env": env, **json.loads(proc.stdout.strip().splitlines()[-1])}
        print(name, json.dumps(results[name]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
