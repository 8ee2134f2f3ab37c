"""Oracle study: what a perfect generator would score with the pipeline's own metrics, measured, not assumed.

The codec ceiling (``ceiling.*`` in metrics.json) scores the reference clips themselves through the codec: each
clip is compared with *itself*, so it sits below anything a generator can reach, since a generator delivers
*new* clips of the prompt's tags. This study builds three stand-in "generators" from real audio and scores each
with the evaluate stage's own code (same embedder, judge, text–audio model, reference set and best-seed rule):

- ``retrieval_codec``: per prompt, the ``--seeds`` training clips whose tags overlap the prompt's concepts most
  (Jaccard over category:tag pairs, as the report's reference match; ties broken by a seeded shuffle),
  round-tripped through the model's codec — a generator that is perfect up to its codec;
- ``retrieval_raw``: the same clips without the codec (the floor set by drawing new clips at all);
- ``random_codec``: random training clips through the codec (perfect audio that ignores its text).

Needs a finished ``make repro`` (data, generated/prompts.jsonl, params.yaml). Writes ``reports/oracle_study.json``
(metrics of each oracle next to the run's own metrics.json) and prints a table; about 3 minutes on 2 CPU cores.

    PYTHONPATH=. .venv/bin/python bench/oracle_study.py --root .
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.challenge.prompts import load_prompts, save_prompts  # noqa: E402
from evaluation.metrics.audio_sets import DatasetClip, read_dataset_split  # noqa: E402
from evaluation.metrics.excerpt import SCORED_SECONDS  # noqa: E402
from evaluation.scoring.evaluator import run_evaluation  # noqa: E402
from evaluation.scoring.reference_match import concept_pairs, jaccard  # noqa: E402
from evaluation.scoring.settings import EvaluateSettings  # noqa: E402
from model.audio.io import load_audio, write_audio  # noqa: E402
from pipelines.common.params import config_of, load_params  # noqa: E402
from pipelines.evaluate import CodecRoundTrip  # noqa: E402

log = logging.getLogger("oracle_study")
ORACLES = ("retrieval_codec", "retrieval_raw", "random_codec")


def pick_clips(
    concepts: dict[str, Any], pool: list[DatasetClip], k: int, rng: random.Random, by_tags: bool = True
) -> list[DatasetClip]:
    """``k`` clips of ``pool``: the highest Jaccard overlap with ``concepts`` first (seeded tie-break), or random."""
    if k > len(pool):
        raise ValueError(f"asked for {k} clips per prompt from a pool of {len(pool)}")
    if not by_tags:
        return rng.sample(pool, k)
    want = concept_pairs(concepts)
    keyed = [(-jaccard(want, concept_pairs(c.tags)), rng.random(), c.track_id, c) for c in pool]
    keyed.sort(key=lambda t: t[:3])
    return [t[3] for t in keyed[:k]]


def write_oracle_set(
    out: Path,
    prompts: list,
    pool: list[DatasetClip],
    seeds: int,
    by_tags: bool,
    roundtrip: CodecRoundTrip | None,
    seed: int,
) -> None:
    """An evaluate-ready generated folder: ``prompts.jsonl``, ``manifest.parquet``, ``<prompt>/seed-<k>.wav``."""
    rng = random.Random(seed)
    rows = []
    for prompt in tqdm(prompts, desc=out.name, unit="prompt", leave=False):
        for k, clip in enumerate(pick_clips(dict(prompt.concepts), pool, seeds, rng, by_tags)):
            audio, sr = load_audio(clip.path, duration_s=SCORED_SECONDS)
            if roundtrip is not None:
                audio, sr = roundtrip(audio, sr)
            path = out / prompt.prompt_id / f"seed-{k}.wav"
            write_audio(path, np.ascontiguousarray(audio, np.float32), sr)
            rows.append(
                {
                    "prompt_id": prompt.prompt_id,
                    "seed": k,
                    "path": str(path),
                    "caption": prompt.caption,
                    "source_track": clip.track_id,
                }
            )
    pq.write_table(pa.Table.from_pylist(rows), out / "manifest.parquet")
    save_prompts(out / "prompts.jsonl", prompts)


def run_study(root: Path, seeds: int, seed: int, work: Path) -> dict[str, Any]:
    if not (root / "params.yaml").is_file():
        raise FileNotFoundError(
            f"{root / 'params.yaml'} not found: --root must be the repository of a make repro"
        )
    params = load_params(root / "params.yaml")
    prepared = root / params.data.prepared_dir
    tracks = str(prepared / "tracks.parquet")
    instrumental = str(root / params.separate.out_dir / "manifest.parquet")
    prompts_file = root / params.generate.out_dir / "prompts.jsonl"
    if not prompts_file.is_file():
        raise FileNotFoundError(
            f"{prompts_file} not found: the study scores the prompts of a finished make repro "
            "(run make repro, or dvc repro generate, first)"
        )
    prompts = load_prompts(prompts_file)
    pool = read_dataset_split(tracks, instrumental, "train")
    settings = config_of(
        EvaluateSettings,
        params.evaluate,
        out_dir=str(work / "eval"),
        cache_dir=str(root / params.evaluate.cache_dir),
    )
    roundtrip = CodecRoundTrip(params.codec.model_dump())
    results: dict[str, Any] = {}
    for name in ORACLES:
        started = time.perf_counter()
        gen = work / name
        write_oracle_set(
            gen,
            prompts,
            pool,
            seeds,
            by_tags=name != "random_codec",
            roundtrip=None if name == "retrieval_raw" else roundtrip,
            seed=seed,
        )
        outputs = run_evaluation(settings, str(gen), tracks, instrumental, roundtrip)
        results[name] = {**outputs.metrics, "wall_s": round(time.perf_counter() - started, 1)}
        log.info("%s: %s", name, _row(outputs.metrics))
    own = root / params.evaluate.out_dir / "metrics.json"
    return {
        "what": "metrics of stand-in generators built from real training audio, scored by the evaluate stage's "
        "own code; retrieval_codec is a generator that is perfect up to its codec",
        "n_prompts": len(prompts),
        "seeds": seeds,
        "seed": seed,
        "train_pool": len(pool),
        "codec": params.codec.name,
        "embedder": settings.embedder,
        "judge": settings.judge,
        "oracles": results,
        "this_run": json.loads(own.read_text()) if own.is_file() else None,
    }


def _row(m: dict[str, Any]) -> str:
    return f"FAD {m['fad']:7.3f}  CLAP {m['clap']:.3f}  CCS {m['ccs']:.3f}  margin {m['ccs_margin']:.3f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".", help="repository with a finished make repro")
    ap.add_argument("--seeds", type=int, default=2, help="clips per prompt (as generate.seeds)")
    ap.add_argument("--seed", type=int, default=0, help="tie-break / random-pick seed")
    ap.add_argument("--out", default=None, help="default: <root>/reports/oracle_study.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = Path(args.root).resolve()
    os.chdir(root)  # the data tables hold paths relative to the repository
    with tempfile.TemporaryDirectory(prefix="flowjam-oracle-") as tmp:
        study = run_study(root, args.seeds, args.seed, Path(tmp))
    out = Path(args.out) if args.out else root / "reports" / "oracle_study.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(study, indent=2) + "\n")
    rows = [(n, study["oracles"][n]) for n in ORACLES]
    if study["this_run"]:
        rows += [("this run (generated)", study["this_run"])]
        if "ceiling" in study["this_run"]:
            rows += [("codec ceiling", study["this_run"]["ceiling"])]
    for name, m in rows:
        print(f"{name:22s} {_row(m)}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
