"""Train the offline judge and text–audio model on the embedded data, with their own held-out figures.

- tagger (CCS judge): train split descriptors + tags, thresholds from the validation split; reported:
  validation accuracy and the CCS of real validation audio against its own tags and against a derangement
  (the upper reference the generated audio can approach).
- local-clap (text–audio score): train split descriptors + MiniLM-pooled captions; reported on the
  validation split: mean cosine with the own caption, with a deranged caption, and top-1 retrieval accuracy.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics.audio_sets import DatasetClip, embed_paths
from evaluation.metrics.ccs import TaggerJudge, ccs_report, seeded_derangement
from evaluation.metrics.clap_score import LocalClap, LocalClapConfig, pooled_text_features, train_local_clap
from evaluation.metrics.excerpt import SCORED_SECONDS
from evaluation.metrics.spectral_features import judge_features
from evaluation.metrics.tagger import ConceptTagger, TaggerConfig, train_tagger

log = logging.getLogger(__name__)


def clip_descriptors(
    clips: Sequence[DatasetClip], describe: Callable[[np.ndarray, int], np.ndarray], desc: str
) -> tuple[list[DatasetClip], np.ndarray, list[dict[str, str]]]:
    """Codec-robust descriptor columns per readable clip (mean over its windows) -> (kept clips, (B, D'), rejects)."""
    embedded, rejects = embed_paths([c.path for c in clips], {"d": describe}, SCORED_SECONDS, desc)
    kept = [(c, e) for c, e in zip(clips, embedded["d"], strict=True) if e is not None]
    if not kept:
        raise ValueError(f"{desc}: no readable audio among {len(clips)} clips")
    return [c for c, _ in kept], judge_features(np.stack([e.mean(axis=0) for _, e in kept])), rejects


def fit_tagger(
    train: Sequence[DatasetClip],
    train_x: np.ndarray,
    val: Sequence[DatasetClip],
    val_x: np.ndarray,
    steps: int,
    seed: int,
    shuffle_seed: int,
    save_to: str | os.PathLike,
) -> tuple[ConceptTagger, dict]:
    tagger = train_tagger(
        train_x, [c.tags for c in train], val_x, [c.tags for c in val], TaggerConfig(steps=steps, seed=seed)
    )
    tagger.save(save_to)
    report = ccs_report(TaggerJudge(tagger), val_x, [c.tags for c in val], np.arange(len(val)), shuffle_seed)
    figures = {
        "accuracy": tagger.info["validation_accuracy"],
        "ccs": report.ccs,
        "ccs_shuffled": report.ccs_shuffled,
        "ccs_margin": report.margin,
        "n_train": len(train),
        "n_validation": len(val),
        "path": str(save_to),
    }
    log.info(
        "tagger on real validation audio: accuracy %.3f, CCS %.3f vs shuffled %.3f",
        figures["accuracy"],
        figures["ccs"],
        figures["ccs_shuffled"],
    )
    return tagger, figures


def _tag_key(tags: dict[str, Sequence[str]]) -> str:
    return json.dumps({k: sorted(v) for k, v in sorted(tags.items())})


def fit_local_clap(
    train: Sequence[DatasetClip],
    train_x: np.ndarray,
    val: Sequence[DatasetClip],
    val_x: np.ndarray,
    text_encoder: Any,
    steps: int,
    seed: int,
    shuffle_seed: int,
    save_to: str | os.PathLike,
) -> tuple[LocalClap, dict]:
    text_train = pooled_text_features(text_encoder, [c.caption for c in train])
    model = train_local_clap(
        train_x,
        text_train,
        [_tag_key(c.tags) for c in train],
        LocalClapConfig(steps=steps, seed=seed),
        text_encoder=text_encoder,
    )
    Path(save_to).parent.mkdir(parents=True, exist_ok=True)
    model.save(save_to)
    a = model.audio_vectors(val_x)
    t = model.text_vectors([c.caption for c in val])
    sims = a @ t.T
    figures: dict[str, Any] = {
        "cosine_own_caption": float(np.mean(np.diag(sims))),
        "n_train": len(train),
        "n_validation": len(val),
        "path": str(save_to),
    }
    if len(val) >= 2:
        perm = seeded_derangement(len(val), shuffle_seed)
        figures["cosine_shuffled_caption"] = float(np.mean(sims[np.arange(len(val)), perm]))
        keys = np.array([_tag_key(c.tags) for c in val])
        figures["top1_tagset_retrieval"] = float(np.mean(keys[sims.argmax(axis=1)] == keys))
    log.info("local-clap on validation: %s", {k: v for k, v in figures.items() if isinstance(v, float)})
    return model, figures
