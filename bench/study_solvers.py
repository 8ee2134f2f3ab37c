"""Solver study: local FAD / CLAP / CCS of the trained model against network evaluations, per ODE solver.

For every solver (euler, midpoint, heun, ab2) and budget of network evaluations (NFE: 4, 8, 16, 25, 50, 100; the
two-evaluation solvers take NFE // 2 steps, so "25" is 24 for them) and every noise seed index, the trained model
renders the same prompt subset (the first ``--prompts`` builtin prompts, 10 s, CFG ``generate.cfg_scale``) and the
clips are scored in memory with the pipeline's own offline metrics, exactly as the evaluate stage builds them:
FAD of the set against the test split (``evaluate.embedder: spectral``), the local text–audio score (``local``) and
CCS with the trained tagger (``tagger``). The tagger and local-clap are trained once, with the stage's settings.
Each seed is scored as its own set, so the spread between seeds shows the noise of each figure.

Writes ``reports/solver_study.json`` (settings, every row, wall time) and ``reports/solver_study/<method>.csv``
(nfe, steps and per-seed + mean figures), the DVC plots of metric vs evaluations (dvc.yaml ``plots:``).

    PYTHONPATH=. .venv/bin/python bench/study_solvers.py --root . --prompts 24
    # --root: the repository whose data/ and models/final to read (relative audio paths resolve there)
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.challenge.prompts import resolve_prompts  # noqa: E402
from evaluation.metrics.audio_sets import embed_paths, read_dataset_split  # noqa: E402
from evaluation.metrics.ccs import TaggerJudge, ccs_report  # noqa: E402
from evaluation.metrics.clap_score import text_audio_scores  # noqa: E402
from evaluation.metrics.embedders import SpectralStatsEmbedder  # noqa: E402
from evaluation.metrics.excerpt import SCORED_SECONDS  # noqa: E402
from evaluation.metrics.fad import EmbeddingStats, fad_between  # noqa: E402
from evaluation.metrics.offline_models import clip_descriptors, fit_local_clap, fit_tagger  # noqa: E402
from evaluation.metrics.spectral_features import judge_features  # noqa: E402
from evaluation.scoring.settings import EvaluateSettings  # noqa: E402
from model.flow.sampling import SINGLE_EVALUATION_METHODS, SamplerConfig, noise_generator  # noqa: E402
from model.flow.text_to_music import OUTPUT_SAMPLE_RATE, TextToMusic  # noqa: E402
from pipelines.common.params import config_of, load_params  # noqa: E402

log = logging.getLogger("study_solvers")
METHODS = ("euler", "midpoint", "heun", "ab2")
NFES = (4, 8, 16, 25, 50, 100)


def steps_for(method: str, nfe: int) -> int:
    return nfe if method in SINGLE_EVALUATION_METHODS else max(1, nfe // 2)


class LocalMetrics:
    """The evaluate stage's offline metrics (spectral FAD, local-clap, tagger CCS), built once."""

    def __init__(self, settings: EvaluateSettings, tracks: str, instrumental: str, work: Path):
        if (settings.embedder, settings.text_audio, settings.judge) != ("spectral", "local", "tagger"):
            raise SystemExit(
                "study_solvers: needs the offline metrics (evaluate.embedder: spectral, "
                "text_audio: local, judge: tagger)"
            )
        from evaluation.metrics.clap_score import LOCAL_CLAP_TEXT, LocalClap
        from evaluation.metrics.tagger import ConceptTagger
        from model.text import build_text_encoder

        self.embedder = SpectralStatsEmbedder()
        self.shuffle_seed = settings.shuffle_seed
        text_encoder = build_text_encoder(LOCAL_CLAP_TEXT)
        key = {"tracks": str(Path(tracks).resolve()), "settings": settings.__dict__}
        cached = work / "setup.json"
        if cached.is_file() and json.loads(cached.read_text())["key"] == json.loads(json.dumps(key)):
            info = json.loads(cached.read_text())
            ref = np.load(work / "reference.npy")
            self.tagger = ConceptTagger.load(work / "tagger.pt")
            self.clap = LocalClap.load(work / "local_clap.pt", text_encoder=text_encoder)
            self.tagger_validation, self.clap_validation = info["tagger"], info["clap"]
            log.info("reusing the reference set, tagger and local-clap of %s", work)
        else:
            test = read_dataset_split(tracks, instrumental, "test")
            emb, _ = embed_paths(
                [c.path for c in test], {"fad": self.embedder.embed}, SCORED_SECONDS, "reference"
            )
            ref = np.concatenate([e for e in emb["fad"] if e is not None])
            train = read_dataset_split(tracks, instrumental, "train")
            val = read_dataset_split(tracks, instrumental, "validation")
            train, train_x, _ = clip_descriptors(train, self.embedder.embed, "train split")
            val, val_x, _ = clip_descriptors(val, self.embedder.embed, "validation split")
            self.tagger, self.tagger_validation = fit_tagger(
                train,
                train_x,
                val,
                val_x,
                settings.tagger_steps,
                settings.seed,
                settings.shuffle_seed,
                work / "tagger.pt",
            )
            self.clap, self.clap_validation = fit_local_clap(
                train,
                train_x,
                val,
                val_x,
                text_encoder,
                settings.local_clap_steps,
                settings.seed,
                settings.shuffle_seed,
                work / "local_clap.pt",
            )
            np.save(work / "reference.npy", ref)
            cached.write_text(
                json.dumps(
                    {"key": key, "tagger": self.tagger_validation, "clap": self.clap_validation}, default=str
                )
            )
        self.reference = EmbeddingStats.from_embeddings(ref)
        self.n_reference = int(ref.shape[0])

    def score(self, audio: np.ndarray, captions: list[str], concepts: list[dict]) -> dict[str, float]:
        """audio: (B, 2, N) at 44.1 kHz, clip b for prompt b -> fad, clap, ccs, ccs_margin of the set."""
        windows = [self.embedder.embed(a, OUTPUT_SAMPLE_RATE) for a in audio]
        descriptors = judge_features(np.stack([w.mean(axis=0) for w in windows]))
        fad = fad_between(EmbeddingStats.from_embeddings(np.concatenate(windows)), self.reference)
        clap = float(np.mean(text_audio_scores(self.clap, descriptors, captions)))
        report = ccs_report(
            TaggerJudge(self.tagger), descriptors, concepts, np.arange(len(captions)), self.shuffle_seed
        )
        return {
            "fad": float(fad),
            "clap": clap,
            "ccs": float(report.ccs),
            "ccs_margin": float(report.margin),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", default=".", help="repository to read data/, models/final and params.yaml from"
    )
    parser.add_argument("--model-dir", default=None, help="default: <root>/<train.out_dir>")
    parser.add_argument("--prompts", type=int, default=24, help="the first N builtin prompts")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--nfe", nargs="+", type=int, default=list(NFES))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "reports"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--max-nfe-others",
        type=int,
        default=1000,
        help="run solvers other than euler only up to this NFE (euler runs all: the reference)",
    )
    parser.add_argument(
        "--work", default="/tmp/flowjam_solver_study", help="scratch dir (tagger, local-clap)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()
    (out / "solver_study").mkdir(parents=True, exist_ok=True)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(args.root)  # the prepared tables hold paths relative to the repository root
    params = load_params("params.yaml")
    model_dir = args.model_dir or params.train.out_dir
    tracks = str(Path(params.data.prepared_dir) / "tracks.parquet")
    instrumental = str(Path(params.separate.out_dir) / "manifest.parquet")
    settings = config_of(EvaluateSettings, params.evaluate, cache_dir=str(work))
    cfg_scale = params.generate.cfg_scale
    prompts = resolve_prompts("builtin", tracks, args.prompts, seed=0)

    start = time.perf_counter()
    metrics = LocalMetrics(settings, tracks, instrumental, work)
    setup_s = time.perf_counter() - start
    engine = TextToMusic.from_dir(model_dir, "cpu", "fp32")
    captions = [p.caption for p in prompts]
    concepts = [dict(p.concepts) for p in prompts]
    done_file = work / "rows.jsonl"
    rows = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.is_file() else []
    rows = [
        r
        for r in rows
        if r.get("model_dir") == str(Path(model_dir).resolve()) and r["n_prompts"] == len(prompts)
    ]
    done = {(r["method"], r["nfe_budget"], r["seed"]) for r in rows}
    jobs = [
        (m, n, k)
        for n in sorted(args.nfe)
        for m in args.methods
        for k in range(args.seeds)
        if (m, n, k) not in done and not (m != "euler" and n > args.max_nfe_others)
    ]
    reference = [j for j in jobs if j[:2] == ("euler", max(args.nfe))]
    jobs = reference + [
        j for j in jobs if j not in reference
    ]  # the reference first: the rest is judged by it
    info = {
        "what": "local FAD (spectral-stats, not CLAP), local-clap text-audio score and tagger CCS of one 10 s clip "
        "per prompt, per seed index, against network evaluations (NFE) and ODE solver",
        "model_dir": str(Path(model_dir).resolve()),
        "prompts": [p.prompt_id for p in prompts],
        "n_prompts": len(prompts),
        "seeds": args.seeds,
        "cfg_scale": cfg_scale,
        "threads": args.threads,
        "n_reference_clips": metrics.n_reference,
        "tagger_validation": metrics.tagger_validation,
        "local_clap_validation": metrics.clap_validation,
        "setup_s": round(setup_s, 1),
    }
    for method, nfe, seed in tqdm(jobs, desc="solver study", unit="set"):
        sampler = SamplerConfig(steps=steps_for(method, nfe), cfg_scale=cfg_scale, method=method)
        gens = [noise_generator(p.prompt_id, seed, 0) for p in prompts]
        t0, c0 = time.perf_counter(), time.process_time()
        audio = engine.generate(captions, gens, 10.0, sampler)
        row = {
            "method": method,
            "nfe": sampler.evaluations,
            "nfe_budget": nfe,
            "steps": sampler.steps,
            "seed": seed,
            "generate_wall_s": round(time.perf_counter() - t0, 2),
            "generate_cpu_s": round(time.process_time() - c0, 2),
            **metrics.score(audio, captions, concepts),
            "model_dir": str(Path(model_dir).resolve()),
            "n_prompts": len(prompts),
        }
        rows.append(row)
        with open(done_file, "a") as f:
            f.write(json.dumps(row) + "\n")
        log.info("%s", row)
        write_outputs(out, rows, {**info, "wall_s_this_run": round(time.perf_counter() - start, 1)})
    write_outputs(out, rows, {**info, "wall_s_this_run": round(time.perf_counter() - start, 1)})


HIGHER_IS_BETTER = {"fad": False, "clap": True, "ccs": True}


def summarise(rows: list[dict]) -> dict | None:
    """Mean per (method, nfe), the seed noise per metric and the cheapest setting within noise of the reference.

    noise[m] = mean |seed 0 − seed 1| over every setting run on both seeds (how far one prompt set moves with the
    noise seed alone). A setting is within noise of the reference (euler at the largest NFE) when on every metric
    |mean − reference| <= noise[m], either way: a few-step setting that scores *better* on a stand-in metric is a
    different output distribution, not the same one more cheaply. The chosen setting is the cheapest whose method
    stays within noise at every larger NFE measured too (so one lucky pair of seeds cannot pick it).
    """
    by = {}
    for r in rows:
        by.setdefault((r["method"], r["nfe"]), {})[r["seed"]] = r
    pairs = [v for v in by.values() if len(v) >= 2]
    if not pairs:
        return None
    noise = {
        m: float(np.mean([abs(v[0][m] - v[1][m]) for v in pairs if 0 in v and 1 in v]))
        for m in HIGHER_IS_BETTER
    }
    eulers = [k for k in by if k[0] == "euler" and len(by[k]) >= 2]
    if not eulers:
        return None
    ref_key = max(eulers, key=lambda k: k[1])
    ref = {m: float(np.mean([r[m] for r in by[ref_key].values()])) for m in HIGHER_IS_BETTER}
    table = []
    for (method, nfe), seeds in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        mean = {m: float(np.mean([r[m] for r in seeds.values()])) for m in HIGHER_IS_BETTER}
        worse = [
            m
            for m in HIGHER_IS_BETTER
            if (ref[m] - mean[m] if HIGHER_IS_BETTER[m] else mean[m] - ref[m]) > noise[m]
        ]
        differs = [m for m in HIGHER_IS_BETTER if abs(mean[m] - ref[m]) > noise[m]]
        table.append(
            {
                "method": method,
                "nfe": nfe,
                "seeds": len(seeds),
                **mean,
                "worse_than_reference": worse,
                "differs_from_reference": differs,
                "within_noise": len(seeds) >= 2 and not differs,
            }
        )
    ok = [
        t
        for t in table
        if all(u["within_noise"] for u in table if u["method"] == t["method"] and u["nfe"] >= t["nfe"])
    ]
    chosen = min(ok, key=lambda t: (t["nfe"], t["method"] != "euler")) if ok else None
    return {
        "reference": {"method": ref_key[0], "nfe": ref_key[1], **ref},
        "noise": noise,
        "table": table,
        "cheapest_within_noise": chosen,
    }


def write_outputs(out: Path, rows: list[dict], info: dict) -> None:
    summary = summarise(rows)
    (out / "solver_study.json").write_text(
        json.dumps({**info, "summary": summary, "rows": rows}, indent=2) + "\n"
    )
    keys = ("fad", "clap", "ccs", "ccs_margin")
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        with open(out / "solver_study" / f"{method}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            seeds = sorted({r["seed"] for r in mine})
            writer.writerow(["nfe", "steps", *keys, *(f"{k}_seed{s}" for k in keys for s in seeds)])
            for nfe in sorted({r["nfe"] for r in mine}):
                at = {r["seed"]: r for r in mine if r["nfe"] == nfe}
                means = [round(float(np.mean([at[s][k] for s in at])), 5) for k in keys]
                writer.writerow(
                    [
                        nfe,
                        next(iter(at.values()))["steps"],
                        *means,
                        *(round(at[s][k], 5) if s in at else "" for k in keys for s in seeds),
                    ]
                )
    print(f"wrote {out / 'solver_study.json'} and {out / 'solver_study'}/<method>.csv")


if __name__ == "__main__":
    main()
