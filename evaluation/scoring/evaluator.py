"""The evaluate stage's work: embed generated and reference audio, score FAD / CLAP / CCS, pick the best seeds.

``run_evaluation(settings, generated_dir, tracks_path, instrumental_manifest) -> EvaluationOutputs`` returns
the metrics (``metrics.json``: numbers only), the details (``details.json``: which embedder, text–audio model and
judge, the reference set, set sizes, validation of the offline models), the per-clip table (``per_prompt.parquet``)
and ``best_seeds``; the stage writes them. Each clip's row names its prompt's reference clip for the listening
report (``reference_id``, ``reference_path``, ``reference_overlap``: ``evaluation/scoring/reference_match.py``).

The headline fad / clap / ccs / ccs_margin score one clip per prompt, the chosen seed — what is submitted and
what the challenge scores. ``first_seed.*`` (seed 0 only, the same number of clips: the no-selection baseline) and
``all_seeds.*`` (every clip pooled) are secondary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from evaluation.metrics.alm_judge import AlmJudge, load_alm
from evaluation.metrics.audio_sets import (
    DatasetClip,
    embed_paths,
    read_dataset_split,
    read_generated,
    reference_files,
    tag_vocabulary,
)
from evaluation.metrics.ccs import ClapJudge, ConceptJudge, TaggerJudge, ccs_report
from evaluation.metrics.clap_score import ClapTextAudio, TextAudioScorer, text_audio_scores
from evaluation.metrics.embedders import SpectralStatsEmbedder, build_embedder
from evaluation.metrics.excerpt import SCORED_SECONDS
from evaluation.metrics.fad import EmbeddingStats, fad_between, mahalanobis_to_reference
from evaluation.metrics.offline_models import clip_descriptors, fit_local_clap, fit_tagger
from evaluation.metrics.reference_stats import load_or_compute_arrays, load_or_compute_reference_stats
from evaluation.metrics.spectral_features import judge_features
from evaluation.scoring.best_of import choose_best_seeds
from evaluation.scoring.reference_match import ReferenceMatch, match_reference
from evaluation.scoring.settings import EvaluateSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationOutputs:
    metrics: dict[str, Any]  # numbers only (metrics.json, the DVC metric)
    details: dict[str, Any]  # what produced them (details.json)
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


def _embed_set(
    paths: Sequence[str],
    fad_emb: Any,
    desc_emb: Any,
    clap_emb: Any,
    label: str,
    transform: Callable[[np.ndarray, int], tuple[np.ndarray, int]] | None = None,
):
    """Decode each path once, optionally ``transform`` it, and run the embedders.

    Returns (indices of the readable paths, (FAD windows [(W, E)], judge descriptors (B, F) or None, CLAP audio
    embeddings (B, E) of window 0 or None), rejects).
    """
    fns = {"fad": fad_emb.embed}
    if desc_emb is not None and desc_emb is not fad_emb:
        fns["descriptor"] = desc_emb.embed
    if clap_emb is not None and clap_emb is not fad_emb:
        fns["clap"] = clap_emb.embed
    embedded, rejects = embed_paths(list(paths), fns, SCORED_SECONDS, label, transform)
    embedded.setdefault("descriptor", embedded["fad"] if desc_emb is fad_emb else [None] * len(paths))
    embedded.setdefault("clap", embedded["fad"] if clap_emb is fad_emb else [None] * len(paths))
    keep = [i for i, e in enumerate(embedded["fad"]) if e is not None]
    windows = [embedded["fad"][i] for i in keep]
    descriptors = (
        judge_features(np.stack([embedded["descriptor"][i].mean(axis=0) for i in keep]))
        if desc_emb and keep
        else None
    )
    clap_audio = (
        np.stack([embedded["clap"][i][0] for i in keep]) if clap_emb and keep else None
    )  # window 0: 10 s
    return keep, (windows, descriptors, clap_audio), rejects


def _reference_stats(
    settings: EvaluateSettings, fad_embedder: Any, paths: Sequence[str], rejects: list[dict[str, str]]
):
    def compute(ps: Sequence[str]) -> EmbeddingStats:
        embedded, skipped = embed_paths(list(ps), {"fad": fad_embedder.embed}, SCORED_SECONDS, "reference")
        rejects.extend(skipped)
        kept = [e for e in embedded["fad"] if e is not None]
        if len(kept) < 2:
            raise ValueError(f"reference set: only {len(kept)} readable file(s) of {len(ps)}; FAD needs >= 2")
        return EmbeddingStats.from_embeddings(np.concatenate(kept))

    return load_or_compute_reference_stats(
        settings.cache_dir, fad_embedder.name, fad_embedder.settings(), list(paths), compute
    )


HEADLINE = ("fad", "clap", "ccs", "ccs_margin")


def _set_scores(
    rows: np.ndarray,
    windows: list[np.ndarray],
    ref: EmbeddingStats,
    text_audio: np.ndarray,
    cov: np.ndarray,
    cov_shuffled: np.ndarray,
    label: str,
) -> dict[str, float]:
    """fad / clap / ccs / ccs_shuffled / ccs_margin / n_clips / n_windows of the clips ``rows`` (one set)."""
    emb = np.concatenate([windows[i] for i in rows])
    if emb.shape[0] < 2:
        raise ValueError(
            f"{label}: FAD needs >= 2 embedding windows, the set has {emb.shape[0]}; "
            "generate more prompts (generate.prompts) or seeds"
        )
    ccs, ccs_sh = float(np.nanmean(cov[rows])), float(np.nanmean(cov_shuffled[rows]))
    return {
        "fad": fad_between(EmbeddingStats.from_embeddings(emb), ref),
        "clap": float(np.mean(text_audio[rows])),
        "ccs": ccs,
        "ccs_shuffled": ccs_sh,
        "ccs_margin": ccs - ccs_sh,
        "n_clips": int(len(rows)),
        "n_windows": int(emb.shape[0]),
    }


def assemble_metrics(sets: dict[str, dict[str, float]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics.json, the sets' counts for details.json) from per-set scores.

    ``sets`` has ``chosen`` (one clip per prompt, the submitted seed: the headline), ``first_seed`` and
    ``all_seeds``, optionally ``ceiling``. metrics.json holds numbers only: the headline at the top level, each
    other set as a block of the same four numbers; ``ccs_shuffled`` and the counts go to details.
    """
    metrics: dict[str, Any] = {k: float(sets["chosen"][k]) for k in HEADLINE}
    for name in ("first_seed", "all_seeds", "ceiling"):
        if name in sets:  # the ceiling of a captionless reference_dir has fad only
            metrics[name] = {k: float(sets[name][k]) for k in HEADLINE if k in sets[name]}
    counts = {name: {k: v for k, v in s.items() if k not in HEADLINE} for name, s in sets.items()}
    return metrics, counts


def metric_sources(settings: EvaluateSettings, reference_source: str) -> dict[str, dict[str, Any]]:
    """Per headline metric: is it the challenge's metric or an offline stand-in, and what computed it."""
    fad_real, clap_real = settings.embedder == "clap", settings.text_audio == "clap"
    return {
        "fad": {
            "challenge_metric": fad_real,
            "what": (
                "FAD on LAION-CLAP music embeddings, fadtk clap-laion-music windows"
                if fad_real
                else "offline stand-in: FAD on weight-free spectral descriptors; not comparable to CLAP FAD"
            ),
            "reference": reference_source,
        },
        "clap": {
            "challenge_metric": clap_real,
            "what": (
                "LAION-CLAP music text-audio cosine"
                if clap_real
                else "offline stand-in: cosine of a small text-audio model trained on the train split"
            ),
        },
        # the challenge asks an audio-language model per concept; its exact model and wording are not public
        "ccs": {
            "challenge_metric": settings.judge == "alm",
            "what": {
                "tagger": "offline stand-in: a concept tagger trained on the train split",
                "clap": "stand-in: CLAP zero-shot concept judge (the challenge asks an audio-language model)",
            }.get(
                settings.judge,
                f"the challenge's protocol with our model: an audio-language model "
                f"({settings.judge}) asked yes/no per concept; the challenge's own model and "
                "question wording are not public",
            ),
        },
    }


def build_judge(settings: EvaluateSettings, tagger: Any, clap_emb: Any, tracks_path: str) -> ConceptJudge:
    """The CCS judge named by ``evaluate.judge`` (one place where judges are built)."""
    if settings.judge == "tagger":
        return TaggerJudge(tagger)
    if settings.judge == "alm":
        return AlmJudge(load_alm(settings.alm_path), settings.alm_batch_size)  # reads the clips' own files
    return ClapJudge(clap_emb.embed_text, tag_vocabulary(tracks_path), clap_emb.name)


def _ceiling_embeddings(
    settings: EvaluateSettings,
    paths: list[str],
    embedders: tuple[Any, Any, Any],
    roundtrip: Callable[[np.ndarray, int], tuple[np.ndarray, int]],
    files_hash: str,
    rejects: list[dict[str, str]],
) -> tuple[dict[str, np.ndarray], bool]:
    """(arrays, cache hit): the reference files' embeddings after ``roundtrip``, cached in ``evaluate.cache_dir`` by codec settings,
    embedder settings and file list: the round trip (Griffin-Lim, a DCAE) costs more than the rest of the stage.

    Returns ``keep`` (B,) readable file indices, ``windows`` (sum W, E) with ``lengths`` (B,), and, when those
    embedders are used, ``descriptors`` (B, F) and ``clap`` (B, E).
    """
    key = {
        "codec": getattr(roundtrip, "settings", lambda: repr(roundtrip))(),
        "files": files_hash,
        "embedders": [e.settings() if e is not None else None for e in embedders],
    }

    def compute() -> dict[str, np.ndarray]:
        keep, (windows, descriptors, clap_audio), skipped = _embed_set(
            paths, *embedders, "codec ceiling", roundtrip
        )
        rejects.extend(skipped)
        out = {
            "keep": np.asarray(keep, np.int64),
            "lengths": np.array([len(w) for w in windows], np.int64),
            "windows": np.concatenate(windows) if windows else np.zeros((0, embedders[0].dim)),
        }
        if descriptors is not None:
            out["descriptors"] = descriptors
        if clap_audio is not None:
            out["clap"] = clap_audio
        return out

    return load_or_compute_arrays(settings.cache_dir, "ceiling", key, compute)


def _ceiling_scores(
    ref_clips: list[DatasetClip],
    arrays: dict[str, np.ndarray],
    ref: EmbeddingStats,
    scorer: TextAudioScorer,
    judge: ConceptJudge,
    shuffle_seed: int,
) -> dict[str, float]:
    """The codec ceiling: the round-tripped reference audio scored like generated clips (each reference clip
    against itself after the codec: below what a generator of new clips can reach, bench/oracle_study.py).
    clap / ccs need captions and tags (the test split), else fad only."""
    emb, keep = arrays["windows"], arrays["keep"]
    if emb.shape[0] < 2:
        raise ValueError(f"codec ceiling: {len(keep)} readable reference file(s); FAD needs >= 2 windows")
    scores = {
        "fad": fad_between(EmbeddingStats.from_embeddings(emb), ref),
        "n_clips": int(len(keep)),
        "n_windows": int(emb.shape[0]),
    }
    kept = [ref_clips[i] for i in keep]
    if all(c.caption and c.tags for c in kept):
        text_audio = text_audio_scores(
            scorer,
            arrays.get("descriptors" if scorer.input_kind == "descriptor" else "clap"),
            [c.caption for c in kept],
        )
        scores["clap"] = float(np.mean(text_audio))
        if judge.input_kind == "path":  # the round-tripped audio is never written to files for a path judge
            log.info(
                "codec ceiling: no ccs with judge %s (it reads files; the round trip stays in memory)",
                judge.name,
            )
            return scores
        report = ccs_report(
            judge,
            arrays.get("descriptors" if judge.input_kind == "descriptor" else "clap"),
            [dict(c.tags) for c in kept],
            np.arange(len(kept)),
            shuffle_seed,
        )
        scores.update(
            ccs=report["ccs"],
            ccs_shuffled=report["ccs_shuffled"],
            ccs_margin=report["ccs"] - report["ccs_shuffled"],
        )
    return scores


def _reference_matches(
    prompts: Sequence[Any], ref_clips: list[DatasetClip]
) -> dict[str, ReferenceMatch | None]:
    """Per prompt id its reference clip for the report (same track, else best tag overlap, else None); logged."""
    matches = {p.prompt_id: match_reference(p.prompt_id, p.concepts, ref_clips) for p in prompts}
    same = sum(1 for m in matches.values() if m and m.same_track)
    none = sorted(pid for pid, m in matches.items() if m is None)
    log.info(
        "reference clips beside the prompts: %d same track, %d by tag overlap, %d none%s",
        same,
        len(matches) - same - len(none),
        len(none),
        f" (e.g. {none[0]}: no reference clip shares a tag)" if none else "",
    )
    return matches


def run_evaluation(
    settings: EvaluateSettings,
    generated_dir: str,
    tracks_path: str,
    instrumental_manifest: str,
    roundtrip: Callable[[np.ndarray, int], tuple[np.ndarray, int]] | None = None,
) -> EvaluationOutputs:
    """Score the generated clips (see the module docstring); with ``roundtrip`` (audio, sr) -> (audio, sr), the
    model's codec, also the codec ceiling: the reference audio through that codec, scored the same way."""
    prompts, clips = read_generated(generated_dir)
    fad_emb, desc_emb, clap_emb = _embedders(settings)
    keep, (windows, descriptors, clap_audio), rejects = _embed_set(
        [c.path for c in clips], fad_emb, desc_emb, clap_emb, "generated"
    )
    if len(keep) < 2:
        raise ValueError(f"{generated_dir}: only {len(keep)} readable generated clip(s); FAD needs >= 2")
    clips = [clips[i] for i in keep]

    if settings.reference_dir:
        ref_clips = [DatasetClip(Path(p).stem, p, "") for p in reference_files(settings.reference_dir)]
        ref_source = settings.reference_dir
    else:
        ref_clips = read_dataset_split(tracks_path, instrumental_manifest, "test")
        ref_source = f"test split of {tracks_path} (instrumental audio, first {SCORED_SECONDS:g} s)"
    ref_paths = [c.path for c in ref_clips]
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
                train_clips,
                train_x,
                val_clips,
                val_x,
                settings.tagger_steps,
                settings.seed,
                settings.shuffle_seed,
                models_dir / "tagger.pt",
            )
        if settings.text_audio == "local":
            from model.text import build_text_encoder

            text_encoder = build_text_encoder({"encoder": "minilm", "path": "", "max_length": 64})
            local_clap, offline["local_clap_validation"] = fit_local_clap(
                train_clips,
                train_x,
                val_clips,
                val_x,
                text_encoder,
                settings.local_clap_steps,
                settings.seed,
                settings.shuffle_seed,
                models_dir / "local_clap.pt",
            )

    scorer: TextAudioScorer = local_clap if settings.text_audio == "local" else ClapTextAudio(clap_emb)
    by_id = {p.prompt_id: p for p in prompts}
    captions = [by_id[c.prompt_id].caption for c in clips]
    text_audio = text_audio_scores(
        scorer, descriptors if scorer.input_kind == "descriptor" else clap_audio, captions
    )

    judge = build_judge(settings, tagger, clap_emb, tracks_path)
    prompt_order = [p.prompt_id for p in prompts]
    prompt_index = np.array([prompt_order.index(c.prompt_id) for c in clips])
    concepts = [dict(p.concepts) for p in prompts]
    judge_input = {"descriptor": descriptors, "clap": clap_audio, "path": np.array([c.path for c in clips])}[
        judge.input_kind
    ]
    report = ccs_report(judge, judge_input, concepts, prompt_index, settings.shuffle_seed)

    fad_distance = np.array([mahalanobis_to_reference(w, ref_stats).mean() for w in windows])
    best = choose_best_seeds(
        [c.prompt_id for c in clips],
        [c.seed for c in clips],
        fad_distance,
        text_audio,
        settings.best_seed_rule,
    )

    seeds = sorted({c.seed for c in clips})
    rows = {
        "chosen": np.flatnonzero(best.chosen),
        "first_seed": np.array([i for i, c in enumerate(clips) if c.seed == seeds[0]]),
        "all_seeds": np.arange(len(clips)),
    }
    sets = {
        name: _set_scores(
            r,
            windows,
            ref_stats,
            text_audio,
            report["coverage"],
            report["coverage_shuffled"],
            f"{name} clips",
        )
        for name, r in rows.items()
    }
    if roundtrip is not None:
        arrays, hit = _ceiling_embeddings(
            settings, ref_paths, (fad_emb, desc_emb, clap_emb), roundtrip, ref_meta["file_list_hash"], rejects
        )
        sets["ceiling"] = {
            **_ceiling_scores(ref_clips, arrays, ref_stats, scorer, judge, settings.shuffle_seed),
            "cache_hit": hit,
        }
    metrics, counts = assemble_metrics(sets)
    details: dict[str, Any] = {
        "headline": "one clip per prompt: the seed chosen by evaluate.best_seed_rule, the clip that is submitted",
        "best_seed_rule": settings.best_seed_rule,
        "first_seed": int(seeds[0]),
        "seeds": [int(s) for s in seeds],
        "n_prompts": len(prompts),
        "n_rejected": len(rejects),
        "sets": counts,
        "embedder": fad_emb.name,
        "text_audio_model": scorer.name,
        "judge": judge.name,
        "metric_sources": metric_sources(settings, ref_source),
        "reference": {
            "source": ref_source,
            "n_files": len(ref_paths),
            "n_windows": ref_stats.count,
            "file_list_hash": ref_meta["file_list_hash"],
            "stats_cache": ref_meta["cache_path"],
            "cache_hit": ref_meta["cache_hit"],
        },
        **offline,
    }
    if isinstance(judge, TaggerJudge) and judge.unknown_concepts:
        details["unknown_concepts"] = sorted(f"{c}:{n}" for c, n in judge.unknown_concepts)

    judged = report["judgements"]
    references = _reference_matches(prompts, ref_clips)
    matched = [references[c.prompt_id] for c in clips]
    per_prompt = pa.table(
        {
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
            "reference_id": pa.array([m.track_id if m else None for m in matched], pa.string()),
            "reference_path": pa.array([m.path if m else None for m in matched], pa.string()),
            "reference_overlap": pa.array([m.overlap if m else None for m in matched], pa.float64()),
        }
    )
    log.info(
        "chosen seeds: FAD %.4f  CLAP %.4f  CCS %.3f (margin %.3f); all seeds: FAD %.4f  CLAP %.4f  CCS %.3f"
        "  [%s | %s | %s]",
        metrics["fad"],
        metrics["clap"],
        metrics["ccs"],
        metrics["ccs_margin"],
        metrics["all_seeds"]["fad"],
        metrics["all_seeds"]["clap"],
        metrics["all_seeds"]["ccs"],
        fad_emb.name,
        scorer.name,
        judge.name,
    )
    return EvaluationOutputs(metrics, details, per_prompt, best.best_seeds, rejects)
