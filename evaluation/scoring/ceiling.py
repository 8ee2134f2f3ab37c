"""The codec ceiling: the reference audio round-tripped through the model's codec and scored like generated clips.

Each reference clip is scored against itself after the codec, so the ceiling lies below what a generator of new
clips can reach (bench/oracle_study.py measures that). The round trip (Griffin-Lim, a DCAE) costs more than the
rest of the stage, so its embeddings are cached in ``evaluate.cache_dir`` by codec settings, embedder settings and
the reference file list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from evaluation.metrics.audio_sets import DatasetClip
from evaluation.metrics.ccs import ConceptJudge, ccs_report
from evaluation.metrics.clap_score import TextAudioScorer, text_audio_scores
from evaluation.metrics.fad import EmbeddingStats, fad_between
from evaluation.metrics.reference_stats import load_or_compute_arrays
from evaluation.scoring.embedded import EmbeddedSet, Embedders, embed_set
from evaluation.scoring.results import SetScores

log = logging.getLogger(__name__)

RoundTrip = Callable[[np.ndarray, int], tuple[np.ndarray, int]]


def ceiling_embeddings(
    cache_dir: str,
    paths: list[str],
    embedders: Embedders,
    roundtrip: RoundTrip,
    files_hash: str,
    rejects: list[dict[str, str]],
) -> tuple[EmbeddedSet, bool]:
    """(the reference files' embeddings after ``roundtrip``, cache hit)."""
    key = {
        "codec": getattr(roundtrip, "settings", lambda: repr(roundtrip))(),
        "files": files_hash,
        "embedders": [e.settings() if e is not None else None for e in embedders.all()],
    }

    def compute() -> dict[str, np.ndarray]:
        embedded, skipped = embed_set(paths, embedders, "codec ceiling", roundtrip)
        rejects.extend(skipped)
        return embedded.to_arrays(embedders.fad.dim)

    arrays, hit = load_or_compute_arrays(cache_dir, "ceiling", key, compute)
    return EmbeddedSet.from_arrays(arrays), hit


def ceiling_scores(
    ref_clips: list[DatasetClip],
    embedded: EmbeddedSet,
    ref: EmbeddingStats,
    scorer: TextAudioScorer,
    judge: ConceptJudge,
    shuffle_seed: int,
    cache_hit: bool,
) -> SetScores:
    """The ceiling's scores; clap / ccs need captions and tags (the test split), else fad only."""
    emb = np.concatenate(embedded.windows) if embedded.windows else np.zeros((0, 1))
    if emb.shape[0] < 2:
        raise ValueError(
            f"codec ceiling: {len(embedded.keep)} readable reference file(s); FAD needs >= 2 windows"
        )
    scores: dict[str, Any] = {
        "fad": fad_between(EmbeddingStats.from_embeddings(emb), ref),
        "n_clips": int(len(embedded.keep)),
        "n_windows": int(emb.shape[0]),
        "cache_hit": cache_hit,
    }
    kept = [ref_clips[i] for i in embedded.keep]
    if not all(c.caption and c.tags for c in kept):
        return SetScores(**scores)
    text_audio = text_audio_scores(scorer, embedded.input_for(scorer.input_kind), [c.caption for c in kept])
    scores["clap"] = float(np.mean(text_audio))
    if judge.input_kind == "path":  # the round-tripped audio is never written to files for a path judge
        log.info(
            "codec ceiling: no ccs with judge %s (it reads files; the round trip stays in memory)", judge.name
        )
        return SetScores(**scores)
    report = ccs_report(
        judge,
        embedded.input_for(judge.input_kind),
        [dict(c.tags) for c in kept],
        np.arange(len(kept)),
        shuffle_seed,
    )
    return SetScores(**scores, ccs=report.ccs, ccs_shuffled=report.ccs_shuffled)
