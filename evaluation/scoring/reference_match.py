"""The reference clip shown beside a prompt's generated clips in the listening report.

``match_reference(prompt_id, concepts, references) -> ReferenceMatch | None``, pure (no files read):

1. a reference clip whose ``track_id`` equals the prompt id is the prompt's own track (the built-in prompts are
   the test split's tracks, prompt id = track id): overlap 1.0, ``same_track`` true;
2. otherwise the clip with the highest Jaccard overlap |P ∩ T| / |P ∪ T| between the prompt's concepts P and the
   clip's tags T, both as ``category:name`` pairs (compared case-insensitively); ties go to the smallest track id;
3. none when the best overlap is 0, e.g. when the reference set has no tags (``evaluate.reference_dir``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from evaluation.metrics.audio_sets import DatasetClip


@dataclass(frozen=True)
class ReferenceMatch:
    track_id: str
    path: str
    overlap: float  # Jaccard of concepts and tags; 1.0 for the prompt's own track
    same_track: bool


def concept_pairs(concepts: Mapping[str, Iterable[str]]) -> frozenset[str]:
    """``{category: names}`` -> the set of ``category:name`` strings, case-folded."""
    return frozenset(
        f"{category}:{name}".casefold() for category, names in concepts.items() for name in names
    )


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b|; 0 when both are empty."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def match_reference(
    prompt_id: str, concepts: Mapping[str, Iterable[str]], references: Sequence[DatasetClip]
) -> ReferenceMatch | None:
    """The reference clip for one prompt (rules in the module docstring), or None."""
    for clip in references:
        if clip.track_id == prompt_id:
            return ReferenceMatch(clip.track_id, clip.path, 1.0, True)
    wanted = concept_pairs(concepts)
    scored = [(jaccard(wanted, concept_pairs(clip.tags)), clip) for clip in references]
    scored = [(overlap, clip) for overlap, clip in scored if overlap > 0]
    if not scored:
        return None
    overlap, clip = min(scored, key=lambda t: (-t[0], t[1].track_id))
    return ReferenceMatch(clip.track_id, clip.path, overlap, False)
