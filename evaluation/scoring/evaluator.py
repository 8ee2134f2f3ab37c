"""The evaluate stage's work: embed generated and reference audio, score FAD / CLAP / CCS, pick the best seeds.

``run_evaluation(settings, generated_dir, tracks_path, instrumental_manifest, roundtrip=None)`` runs the steps
below and returns :class:`~evaluation.scoring.results.EvaluationOutputs`: the metrics (``metrics.json``: numbers
only), the details (``details.json``: which embedder, text–audio model and judge, the reference set, set sizes,
validation of the offline models), the per-clip table (``per_prompt.parquet``) and ``best_seeds``.

1. embed the generated clips (:func:`~evaluation.scoring.embedded.embed_set`) — with ``package`` (the stage
   always passes ``submit.*``), each clip as it is packaged for the challenge
   (:func:`~evaluation.challenge.package.packaged_pcm`: exactly 10 s, 16-bit), fingerprinted so the submit stage
   can check it packages the clips that were scored;
2. the reference set and its FAD statistics (cached);
3. train the offline tagger / local-clap on the train split when the settings use them;
4. score every clip: CLAP score with its caption, CCS of its prompt's concepts, distance to the reference;
5. choose the best seed per prompt; score the sets (:mod:`~evaluation.scoring.subsets`) and the codec ceiling;
6. assemble metrics, details and the per-clip table (each clip with its prompt's reference clip for the report).

The headline fad / clap / ccs / ccs_margin score one clip per *ranked* prompt, the chosen seed — what is submitted
and what the challenge ranks. ``first_seed.*`` (seed 0 only: the no-selection baseline) and ``all_seeds.*`` (every
clip pooled) are secondary, on the ranked prompts too; ``ood.*`` scores the chosen clips of the out-of-distribution
prompts (when the set has any).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.challenge.ood_split import OOD, RANKED
from evaluation.challenge.package import PackagedClipReader, PackageFormat
from evaluation.challenge.prompts import FROM_CAPTION, Prompt, without_concepts
from evaluation.metrics.alm_judge import AlmJudge, load_alm
from evaluation.metrics.audio_sets import (
    DatasetClip,
    GeneratedClip,
    embed_paths,
    read_dataset_split,
    read_generated,
    reference_files,
    tag_vocabulary,
)
from evaluation.metrics.ccs import CcsReport, ClapJudge, ConceptJudge, TaggerJudge, ccs_report
from evaluation.metrics.clap_score import LOCAL_CLAP_TEXT, ClapTextAudio, TextAudioScorer, text_audio_scores
from evaluation.metrics.excerpt import SCORED_SECONDS
from evaluation.metrics.fad import EmbeddingStats, fad_between, mahalanobis_to_reference
from evaluation.metrics.offline_models import clip_descriptors, fit_local_clap, fit_tagger
from evaluation.metrics.reference_stats import load_or_compute_reference_stats
from evaluation.scoring.best_of import choose_best_seeds
from evaluation.scoring.ceiling import RoundTrip, ceiling_embeddings, ceiling_scores
from evaluation.scoring.clip_table import ClipRows, per_clip_table, reference_matches
from evaluation.scoring.embedded import EmbeddedSet, Embedders, embed_set
from evaluation.scoring.results import EvaluationOutputs, SetScores, assemble_metrics, metric_sources
from evaluation.scoring.settings import EvaluateSettings
from evaluation.scoring.subsets import set_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generated:
    """The prompt set and its readable clips (clip i has the embeddings of row i of ``embedded``); per clip the
    sha256 of the packaged clip that was embedded (None without a package format)."""

    prompts: list[Prompt]
    clips: list[GeneratedClip]
    embedded: EmbeddedSet
    package_sha256: list[str | None]

    def prompt_index(self) -> np.ndarray:
        """(B,) the index in ``prompts`` of each clip's prompt."""
        index = {p.prompt_id: i for i, p in enumerate(self.prompts)}
        return np.array([index[c.prompt_id] for c in self.clips], np.int64)

    def clip_splits(self) -> list[str]:
        """(B,) the split (ranked / ood) of each clip's prompt."""
        split = {p.prompt_id: p.split for p in self.prompts}
        return [split[c.prompt_id] for c in self.clips]


@dataclass(frozen=True)
class Reference:
    """The reference set: its clips (with captions and tags for the test split), where it came from, the Gaussian
    of its FAD embeddings and that statistic's cache record."""

    clips: list[DatasetClip]
    source: str
    stats: EmbeddingStats
    meta: dict[str, Any]


@dataclass(frozen=True)
class OfflineModels:
    """The tagger and local-clap trained on the train split (None when the settings do not use them), with their
    held-out figures for details.json."""

    tagger: Any | None
    local_clap: Any | None
    validation: dict[str, Any]


@dataclass(frozen=True)
class ClipScores:
    """Per clip (B,): cosine with its caption, mean distance of its windows to the reference, and CCS."""

    captions: list[str]
    text_audio: np.ndarray
    fad_distance: np.ndarray
    ccs: CcsReport


def embed_generated(
    generated_dir: str,
    embedders: Embedders,
    rejects: list[dict[str, str]],
    package: PackageFormat | None = None,
) -> Generated:
    """Read and embed the generated clips; with ``package``, each clip as it is packaged for the challenge."""
    prompts, clips = read_generated(generated_dir)
    reader = PackagedClipReader(package) if package is not None else None
    embedded, skipped = embed_set([c.path for c in clips], embedders, "generated", reader=reader)
    rejects.extend(skipped)
    if len(embedded) < 2:
        raise ValueError(f"{generated_dir}: only {len(embedded)} readable generated clip(s); FAD needs >= 2")
    kept = [clips[i] for i in embedded.keep]
    sha = [reader.sha256[c.path] if reader is not None else None for c in kept]
    return Generated(prompts, kept, embedded, sha)


def load_reference(
    settings: EvaluateSettings,
    tracks_path: str,
    instrumental_manifest: str,
    fad_embedder: Any,
    rejects: list[dict[str, str]],
) -> Reference:
    """``evaluate.reference_dir``, else the test split's instrumental audio; its statistics cached by file list."""
    if settings.reference_dir:
        clips = [DatasetClip(Path(p).stem, p, "") for p in reference_files(settings.reference_dir)]
        source = settings.reference_dir
    else:
        clips = read_dataset_split(tracks_path, instrumental_manifest, "test")
        source = f"test split of {tracks_path} (instrumental audio, first {SCORED_SECONDS:g} s)"

    def compute(paths: Sequence[str]) -> EmbeddingStats:
        embedded, skipped = embed_paths(list(paths), {"fad": fad_embedder.embed}, SCORED_SECONDS, "reference")
        rejects.extend(skipped)
        kept = [e for e in embedded["fad"] if e is not None]
        if len(kept) < 2:
            raise ValueError(
                f"reference set: only {len(kept)} readable file(s) of {len(paths)}; FAD needs >= 2"
            )
        return EmbeddingStats.from_embeddings(np.concatenate(kept))

    stats, meta = load_or_compute_reference_stats(
        settings.cache_dir, fad_embedder.name, fad_embedder.settings(), [c.path for c in clips], compute
    )
    return Reference(clips, source, stats, meta)


def fit_offline_models(
    settings: EvaluateSettings,
    tracks_path: str,
    instrumental_manifest: str,
    descriptor: Any,
    rejects: list[dict[str, str]],
) -> OfflineModels:
    """The tagger (``evaluate.judge: tagger``) and local-clap (``evaluate.text_audio: local``), saved under
    ``<out_dir>/models``."""
    if settings.judge != "tagger" and settings.text_audio != "local":
        return OfflineModels(None, None, {})
    models_dir = Path(settings.out_dir) / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split in ("train", "validation"):
        clips = read_dataset_split(tracks_path, instrumental_manifest, split)
        kept, x, skipped = clip_descriptors(clips, descriptor.embed, f"{split} split")
        rejects.extend(skipped)
        splits[split] = (kept, x)
    (train, train_x), (val, val_x) = splits["train"], splits["validation"]
    seeds = (settings.seed, settings.shuffle_seed)
    validation: dict[str, Any] = {}
    tagger = local_clap = None
    if settings.judge == "tagger":
        tagger, validation["tagger_validation"] = fit_tagger(
            train, train_x, val, val_x, settings.tagger_steps, *seeds, models_dir / "tagger.pt"
        )
    if settings.text_audio == "local":
        from model.text import build_text_encoder

        local_clap, validation["local_clap_validation"] = fit_local_clap(
            train,
            train_x,
            val,
            val_x,
            build_text_encoder(LOCAL_CLAP_TEXT),
            settings.local_clap_steps,
            *seeds,
            models_dir / "local_clap.pt",
        )
    return OfflineModels(tagger, local_clap, validation)


def build_judge(settings: EvaluateSettings, tagger: Any, clap_emb: Any, tracks_path: str) -> ConceptJudge:
    """The CCS judge named by ``evaluate.judge`` (one place where judges are built)."""
    if settings.judge == "tagger":
        return TaggerJudge(tagger)
    if settings.judge == "alm":
        return AlmJudge(load_alm(settings.alm_path), settings.alm_batch_size)  # reads the clips' own files
    return ClapJudge(clap_emb.embed_text, tag_vocabulary(tracks_path), clap_emb.name)


def score_clips(
    generated: Generated,
    reference: Reference,
    scorer: TextAudioScorer,
    judge: ConceptJudge,
    shuffle_seed: int,
) -> ClipScores:
    by_id = {p.prompt_id: p for p in generated.prompts}
    captions = [by_id[c.prompt_id].caption for c in generated.clips]
    embedded = generated.embedded
    text_audio = text_audio_scores(scorer, embedded.input_for(scorer.input_kind), captions)
    concepts = [dict(p.concepts) for p in generated.prompts]
    report = ccs_report(
        judge, embedded.input_for(judge.input_kind), concepts, generated.prompt_index(), shuffle_seed
    )
    distance = np.array([mahalanobis_to_reference(w, reference.stats).mean() for w in embedded.windows])
    return ClipScores(captions, text_audio, distance, report)


def set_scores(
    rows: np.ndarray,
    windows: list[np.ndarray],
    ref: EmbeddingStats,
    scores: ClipScores,
    label: str,
    fad_optional: bool = False,
) -> SetScores:
    """The scores of the clips ``rows`` as one set; with ``fad_optional``, a set too small for FAD (< 2 windows)
    gets the other scores and no ``fad`` (logged) instead of an error."""
    emb = np.concatenate([windows[i] for i in rows])
    fad = None
    if emb.shape[0] >= 2:
        fad = fad_between(EmbeddingStats.from_embeddings(emb), ref)
    elif fad_optional:
        log.warning("%s: %d embedding window(s), too few for FAD; scored without it", label, emb.shape[0])
    else:
        raise ValueError(
            f"{label}: FAD needs >= 2 embedding windows, the set has {emb.shape[0]}; "
            "generate more prompts (generate.prompts) or seeds"
        )
    judged = rows[~np.isnan(scores.ccs.coverage[rows])]  # prompts without concepts have no CCS
    return SetScores(
        fad=fad,
        n_clips=int(len(rows)),
        n_windows=int(emb.shape[0]),
        clap=float(np.mean(scores.text_audio[rows])),
        ccs=_mean_or_none(scores.ccs.coverage[judged]),
        ccs_shuffled=_mean_or_none(scores.ccs.coverage_shuffled[judged]),
    )


def _mean_or_none(values: np.ndarray) -> float | None:
    """The mean of the defined (non-NaN) values, None when there is none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def run_evaluation(
    settings: EvaluateSettings,
    generated_dir: str,
    tracks_path: str,
    instrumental_manifest: str,
    roundtrip: RoundTrip | None = None,
    package: PackageFormat | None = None,
) -> EvaluationOutputs:
    """Score the generated clips (see the module docstring); with ``roundtrip`` (audio, sr) -> (audio, sr), the
    model's codec, also the codec ceiling: the reference audio through that codec, scored the same way; with
    ``package`` (``submit.*``) every generated clip is scored as it is packaged."""
    rejects: list[dict[str, str]] = []
    embedders = Embedders.for_settings(settings)
    generated = embed_generated(generated_dir, embedders, rejects, package)
    reference = load_reference(settings, tracks_path, instrumental_manifest, embedders.fad, rejects)
    offline = fit_offline_models(settings, tracks_path, instrumental_manifest, embedders.descriptor, rejects)
    scorer: TextAudioScorer = (
        offline.local_clap if settings.text_audio == "local" else ClapTextAudio(embedders.clap)
    )
    judge = build_judge(settings, offline.tagger, embedders.clap, tracks_path)
    scores = score_clips(generated, reference, scorer, judge, settings.shuffle_seed)

    clips = generated.clips
    best = choose_best_seeds(
        [c.prompt_id for c in clips], [c.seed for c in clips], scores.fad_distance, scores.text_audio,
        settings.best_seed_rule,
    )  # fmt: skip
    seeds = sorted({c.seed for c in clips})
    rows = set_rows(generated.clip_splits(), [c.seed for c in clips], best.chosen)
    windows = generated.embedded.windows
    # a handful of out-of-distribution prompts may be too few for FAD: they are observed, not ranked
    sets = {
        name: set_scores(r, windows, reference.stats, scores, f"{name} clips", fad_optional=name == "ood")
        for name, r in rows.items()
    }
    if roundtrip is not None:
        embedded, hit = ceiling_embeddings(
            settings.cache_dir, [c.path for c in reference.clips], embedders, roundtrip,
            reference.meta["file_list_hash"], rejects,
        )  # fmt: skip
        sets["ceiling"] = ceiling_scores(
            reference.clips, embedded, reference.stats, scorer, judge, settings.shuffle_seed, hit
        )
    metrics, counts = assemble_metrics(sets)
    details: dict[str, Any] = {
        "headline": (
            "one clip per ranked prompt: the seed chosen by evaluate.best_seed_rule, the clip that is submitted; "
            "first_seed and all_seeds on the ranked prompts too, ood on the others"
        ),
        "best_seed_rule": settings.best_seed_rule,
        "prompt_split": {
            RANKED: sum(p.split == RANKED for p in generated.prompts),
            OOD: sum(p.split == OOD for p in generated.prompts),
        },
        "prompts_without_concepts": without_concepts(generated.prompts),
        "concepts_from_caption": sorted(
            p.prompt_id for p in generated.prompts if p.concepts_from == FROM_CAPTION
        ),
        "scored_audio": (
            f"the packaged clips: {package.seconds:g} s, {package.sample_rate} Hz, {package.channels} ch, 16-bit"
            if package is not None
            else "the first 10 s of each generated file"
        ),
        "first_seed": int(seeds[0]),
        "seeds": [int(s) for s in seeds],
        "n_prompts": len(generated.prompts),
        "n_rejected": len(rejects),
        "sets": counts,
        "embedder": embedders.fad.name,
        "text_audio_model": scorer.name,
        "judge": judge.name,
        "metric_sources": metric_sources(
            settings.embedder, settings.text_audio, settings.judge, reference.source
        ),
        "reference": {
            "source": reference.source,
            "n_files": len(reference.clips),
            "n_windows": reference.stats.count,
            "file_list_hash": reference.meta["file_list_hash"],
        },
        **offline.validation,
    }
    if isinstance(judge, TaggerJudge) and judge.unknown_concepts:
        details["unknown_concepts"] = sorted(f"{c}:{n}" for c, n in judge.unknown_concepts)
    rows_of_clips = ClipRows(
        generated.clips, scores.captions, generated.clip_splits(), generated.package_sha256,
        scores.text_audio, scores.fad_distance, scores.ccs,
    )  # fmt: skip
    per_prompt = per_clip_table(rows_of_clips, best, reference_matches(generated.prompts, reference.clips))
    nan = float("nan")  # a set without concepts has no CCS: logged as nan, absent from metrics.json
    log.info(
        "ranked prompts, chosen seeds: FAD %.4f  CLAP %.4f  CCS %.3f (margin %.3f); all seeds: FAD %.4f  "
        "CLAP %.4f  CCS %.3f  [%s | %s | %s]",
        metrics["fad"], metrics["clap"], metrics.get("ccs", nan), metrics.get("ccs_margin", nan),
        metrics["all_seeds"]["fad"], metrics["all_seeds"]["clap"], metrics["all_seeds"].get("ccs", nan),
        embedders.fad.name, scorer.name, judge.name,
    )  # fmt: skip
    if "ood" in metrics:
        ood = metrics["ood"]
        log.info(
            "out-of-distribution prompts (observed, not ranked): FAD %.4f  CLAP %.4f  CCS %.3f",
            ood.get("fad", nan), ood["clap"], ood.get("ccs", nan),
        )  # fmt: skip
    run_facts = {
        "reference_stats_cache": reference.meta["cache_path"],
        "reference_cache_hit": reference.meta["cache_hit"],
        **({"ceiling_cache_hit": sets["ceiling"].cache_hit} if "ceiling" in sets else {}),
    }
    return EvaluationOutputs(metrics, details, per_prompt, best.best_seeds, rejects, run_facts)
