"""The evaluate stage's work: embed generated and reference audio, score FAD / CLAP / CCS, pick the best seeds.

``run_evaluation(settings, generated_dir, tracks_path, instrumental_manifest) -> EvaluationOutputs`` returns
the metrics dict (``metrics.json``), the per-clip table (``per_prompt.parquet``) and ``best_seeds``; the
stage writes them. Which embedder, text–audio model and judge produced the numbers is part of the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from evaluation.alm_judge import AlmJudge, load_alm
from evaluation.audio_sets import (
    DatasetClip,
    embed_paths,
    read_dataset_split,
    read_generated,
    reference_files,
    tag_vocabulary,
)
from evaluation.best_of import choose_best_seeds
from evaluation.ccs import ClapJudge, ConceptJudge, TaggerJudge, ccs_report
from evaluation.clap_score import ClapTextAudio, TextAudioScorer, text_audio_scores
from evaluation.embedders import SpectralStatsEmbedder, build_embedder
from evaluation.excerpt import SCORED_SECONDS
from evaluation.fad import EmbeddingStats, fad_between, mahalanobis_to_reference
from evaluation.offline_models import clip_descriptors, fit_local_clap, fit_tagger
from evaluation.reference_stats import load_or_compute_reference_stats
from evaluation.settings import EvaluateSettings
from evaluation.spectral_features import judge_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationOutputs:
    metrics: dict[str, Any]
    per_prompt: pa.Table
    best_seeds: dict[str, int]
    rejects: list[dict[str, str]]


def _embedders(settings: EvaluateSettings) -> tuple[Any, Any, Any]:
    """(FAD embedder, descriptor embedder or None, CLAP embedder or None), sharing one CLAP model."""
    clap = build_embedder({**settings.__dict__, "embedder": "clap"}) if settings.needs_clap else None
    fad = clap if settings.embedder == "clap" else build_embedder({"embedder": settings.embedder})
    descriptor = None
    if settings.needs_descriptors:
        descriptor = fad if isinstance(fad, SpectralStatsEmbedder) else SpectralStatsEmbedder()
    return fad, descriptor, clap


def _reference_stats(settings: EvaluateSettings, fad_embedder: Any, paths: Sequence[str],
                     rejects: list[dict[str, str]]):
    def compute(ps: Sequence[str]) -> EmbeddingStats:
        embedded, skipped = embed_paths(list(ps), {"fad": fad_embedder.embed}, SCORED_SECONDS, "reference")
        rejects.extend(skipped)
        kept = [e for e in embedded["fad"] if e is not None]
        if len(kept) < 2:
            raise ValueError(f"reference set: only {len(kept)} readable file(s) of {len(ps)}; FAD needs >= 2")
        return EmbeddingStats.from_embeddings(np.concatenate(kept))

    return load_or_compute_reference_stats(settings.cache_dir, fad_embedder.name, fad_embedder.settings(),
                                           list(paths), compute)


def _set_metrics(rows: np.ndarray, windows: list[np.ndarray], ref: EmbeddingStats, text_audio: np.ndarray,
                 cov: np.ndarray, cov_shuffled: np.ndarray) -> dict[str, float]:
    stats = EmbeddingStats.from_embeddings(np.concatenate([windows[i] for i in rows]))
    ccs, ccs_sh = float(np.nanmean(cov[rows])), float(np.nanmean(cov_shuffled[rows]))
    return {"fad": fad_between(stats, ref), "clap": float(np.mean(text_audio[rows])), "ccs": ccs,
            "ccs_shuffled": ccs_sh, "ccs_margin": ccs - ccs_sh, "n_clips": int(len(rows))}


def run_evaluation(settings: EvaluateSettings, generated_dir: str, tracks_path: str,
                   instrumental_manifest: str) -> EvaluationOutputs:
    prompts, clips = read_generated(generated_dir)
    fad_emb, desc_emb, clap_emb = _embedders(settings)
    fns = {"fad": fad_emb.embed}
    if desc_emb is not None and desc_emb is not fad_emb:
        fns["descriptor"] = desc_emb.embed
    if clap_emb is not None and clap_emb is not fad_emb:
        fns["clap"] = clap_emb.embed
    embedded, rejects = embed_paths([c.path for c in clips], fns, SCORED_SECONDS, "generated")
    embedded.setdefault("descriptor", embedded["fad"] if desc_emb is fad_emb else [None] * len(clips))
    embedded.setdefault("clap", embedded["fad"] if clap_emb is fad_emb else [None] * len(clips))
    keep = [i for i, e in enumerate(embedded["fad"]) if e is not None]
    if len(keep) < 2:
        raise ValueError(f"{generated_dir}: only {len(keep)} readable generated clip(s); FAD needs >= 2")
    clips = [clips[i] for i in keep]
    windows = [embedded["fad"][i] for i in keep]
    descriptors = (judge_features(np.stack([embedded["descriptor"][i].mean(axis=0) for i in keep]))
                   if desc_emb else None)
    clap_audio = np.stack([embedded["clap"][i][0] for i in keep]) if clap_emb else None  # window 0 = whole 10 s

    if settings.reference_dir:
        ref_paths, ref_source = reference_files(settings.reference_dir), settings.reference_dir
    else:
        ref_paths = [c.path for c in read_dataset_split(tracks_path, instrumental_manifest, "test")]
        ref_source = f"test split of {tracks_path} (instrumental audio, first {SCORED_SECONDS:g} s)"
    ref_stats, ref_meta = _reference_stats(settings, fad_emb, ref_paths, rejects)

    models_dir = Path(settings.out_dir) / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    offline: dict[str, Any] = {}
    tagger = local_clap = None
    if settings.judge == "tagger" or settings.text_audio == "local":
        train_clips: list[DatasetClip] = read_dataset_split(tracks_path, instrumental_manifest, "train")
        val_clips = read_dataset_split(tracks_path, instrumental_manifest, "validation")
        train_clips, train_x, r1 = clip_descriptors(train_clips, desc_emb.embed, "train split")
        val_clips, val_x, r2 = clip_descriptors(val_clips, desc_emb.embed, "validation split")
        rejects += r1 + r2
        if settings.judge == "tagger":
            tagger, offline["tagger_validation"] = fit_tagger(
                train_clips, train_x, val_clips, val_x, settings.tagger_steps, settings.seed,
                settings.shuffle_seed, models_dir / "tagger.pt")
        if settings.text_audio == "local":
            from model.text import build_text_encoder

            text_encoder = build_text_encoder({"encoder": "minilm", "path": "", "max_length": 64})
            local_clap, offline["local_clap_validation"] = fit_local_clap(
                train_clips, train_x, val_clips, val_x, text_encoder, settings.local_clap_steps, settings.seed,
                settings.shuffle_seed, models_dir / "local_clap.pt")

    scorer: TextAudioScorer = local_clap if settings.text_audio == "local" else ClapTextAudio(clap_emb)
    by_id = {p.prompt_id: p for p in prompts}
    captions = [by_id[c.prompt_id].caption for c in clips]
    text_audio = text_audio_scores(scorer, descriptors if scorer.input_kind == "descriptor" else clap_audio,
                                   captions)

    if settings.judge == "tagger":
        judge: ConceptJudge = TaggerJudge(tagger)
    elif settings.judge == "alm":
        judge = AlmJudge(load_alm(settings.alm_path), settings.alm_batch_size)  # reads the clips' own files
    else:
        judge = ClapJudge(clap_emb.embed_text, tag_vocabulary(tracks_path), clap_emb.name)
    prompt_order = [p.prompt_id for p in prompts]
    prompt_index = np.array([prompt_order.index(c.prompt_id) for c in clips])
    concepts = [dict(p.concepts) for p in prompts]
    judge_input = {"descriptor": descriptors, "clap": clap_audio,
                   "path": np.array([c.path for c in clips])}[judge.input_kind]
    report = ccs_report(judge, judge_input, concepts, prompt_index, settings.shuffle_seed)

    fad_distance = np.array([mahalanobis_to_reference(w, ref_stats).mean() for w in windows])
    best = choose_best_seeds([c.prompt_id for c in clips], [c.seed for c in clips], fad_distance, text_audio,
                             settings.best_seed_rule)

    all_rows = np.arange(len(clips))
    seeds = sorted({c.seed for c in clips})
    metrics: dict[str, Any] = _set_metrics(all_rows, windows, ref_stats, text_audio, report["coverage"],
                                           report["coverage_shuffled"])
    chosen_rows = np.flatnonzero(best.chosen)
    first_seed_rows = np.array([i for i, c in enumerate(clips) if c.seed == seeds[0]])
    metrics.update({
        "n_prompts": len(prompts), "n_seeds": len(seeds), "n_rejected": len(rejects),
        "embedder": fad_emb.name, "text_audio_model": scorer.name, "judge": judge.name,
        "best_of_n": {"rule": settings.best_seed_rule,
                      **_set_metrics(chosen_rows, windows, ref_stats, text_audio, report["coverage"],
                                     report["coverage_shuffled"])},
        # same number of clips as best_of_n (FAD is biased by set size): the fair no-selection baseline
        "first_seed": {"seed": int(seeds[0]),
                       **_set_metrics(first_seed_rows, windows, ref_stats, text_audio, report["coverage"],
                                      report["coverage_shuffled"])} if len(first_seed_rows) >= 2 else None,
        "reference": {"source": ref_source, "n_files": len(ref_paths), "n_windows": ref_stats.count,
                      "file_list_hash": ref_meta["file_list_hash"], "stats_cache": ref_meta["cache_path"],
                      "cache_hit": ref_meta["cache_hit"]},
        **offline,
    })
    if isinstance(judge, TaggerJudge) and judge.unknown_concepts:
        metrics["unknown_concepts"] = sorted(f"{c}:{n}" for c, n in judge.unknown_concepts)

    judged = report["judgements"]
    per_prompt = pa.table({
        "prompt_id": [c.prompt_id for c in clips],
        "seed": pa.array([c.seed for c in clips], pa.int32()),
        "path": [c.path for c in clips],
        "caption": captions,
        "fad_distance": fad_distance,
        "text_audio": text_audio,
        "ccs": report["coverage"],
        "ccs_shuffled": report["coverage_shuffled"],
        "n_concepts": pa.array([len(j) for j in judged], pa.int32()),
        "concepts_present": [[f"{c}:{n}" for c, n, ok in j if ok] for j in judged],
        "concepts_missing": [[f"{c}:{n}" for c, n, ok in j if not ok] for j in judged],
        "rank_fad": best.rank_fad,
        "rank_clap": best.rank_clap,
        "mean_rank": best.mean_rank,
        "chosen": best.chosen,
    })
    log.info("FAD %.4f  CLAP %.4f  CCS %.3f (shuffled %.3f)  [%s | %s | %s]", metrics["fad"], metrics["clap"],
             metrics["ccs"], metrics["ccs_shuffled"], fad_emb.name, scorer.name, judge.name)
    return EvaluationOutputs(metrics, per_prompt, best.best_seeds, rejects)
