"""``per_prompt.parquet``: one row per generated clip with its scores, the judge's verdicts, its prompt's split,
the fingerprint of the packaged clip that was scored, and the reference clip shown beside it in the report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from evaluation.challenge.prompts import Prompt
from evaluation.metrics.audio_sets import DatasetClip, GeneratedClip
from evaluation.metrics.ccs import CcsReport
from evaluation.scoring.best_of import BestOfN
from evaluation.scoring.reference_match import ReferenceMatch, match_reference

log = logging.getLogger(__name__)


def reference_matches(
    prompts: Sequence[Prompt], ref_clips: list[DatasetClip]
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


@dataclass(frozen=True)
class ClipRows:
    """Per clip (B,): the clip, its prompt's caption and split, the fingerprint of the packaged clip that was
    scored, its CLAP score and distance to the reference; ``ccs`` the judgements of all B clips."""

    clips: Sequence[GeneratedClip]
    captions: Sequence[str]
    splits: Sequence[str]
    package_sha256: Sequence[str | None]
    text_audio: np.ndarray
    fad_distance: np.ndarray
    ccs: CcsReport


def per_clip_table(rows: ClipRows, best: BestOfN, references: dict[str, ReferenceMatch | None]) -> pa.Table:
    """One row per clip (the order of ``rows.clips``)."""
    clips, judged = rows.clips, rows.ccs.judgements
    matched = [references[c.prompt_id] for c in clips]
    return pa.table(
        {
            "prompt_id": [c.prompt_id for c in clips],
            "seed": pa.array([c.seed for c in clips], pa.int32()),
            "path": [c.path for c in clips],
            "caption": list(rows.captions),
            "split": list(rows.splits),
            "fad_distance": rows.fad_distance,
            "text_audio": rows.text_audio,
            "ccs": rows.ccs.coverage,
            "ccs_shuffled": rows.ccs.coverage_shuffled,
            "n_concepts": pa.array([len(j) for j in judged], pa.int32()),
            "concepts_present": [[f"{c}:{n}" for c, n, ok in j if ok] for j in judged],
            "concepts_missing": [[f"{c}:{n}" for c, n, ok in j if not ok] for j in judged],
            "rank_fad": best.rank_fad,
            "rank_clap": best.rank_clap,
            "mean_rank": best.mean_rank,
            "chosen": best.chosen,
            "package_sha256": pa.array(list(rows.package_sha256), pa.string()),
            "reference_id": pa.array([m.track_id if m else None for m in matched], pa.string()),
            "reference_path": pa.array([m.path if m else None for m in matched], pa.string()),
            "reference_overlap": pa.array([m.overlap if m else None for m in matched], pa.float64()),
        }
    )
