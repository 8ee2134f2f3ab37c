"""What the evaluate stage hands back: the scores of each set of clips, metrics.json, the per-clip table.

``SetScores`` is one set's fad / clap / ccs / ccs_shuffled / ccs_margin and its counts; ``assemble_metrics`` turns
the sets into metrics.json (numbers only: the headline ``chosen`` set at the top level, each other set as a block)
and the counts for details.json; ``metric_sources`` says per headline metric whether it is the challenge's
metric or an offline stand-in; :class:`EvaluationOutputs` is everything the stage writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

HEADLINE = ("fad", "clap", "ccs", "ccs_margin")
SECONDARY_SETS = ("first_seed", "all_seeds", "ood", "ceiling")


@dataclass(frozen=True)
class SetScores:
    """One set of clips scored: FAD against the reference, mean CLAP score, CCS (own and shuffled prompts).

    The codec ceiling of a reference set without captions has ``fad`` only (the others are None); an ``ood`` set
    too small for FAD has no ``fad``; a set whose prompts have no concepts has no ``ccs``."""

    fad: float | None
    n_clips: int
    n_windows: int
    clap: float | None = None
    ccs: float | None = None
    ccs_shuffled: float | None = None
    cache_hit: bool | None = None

    @property
    def ccs_margin(self) -> float | None:
        return None if self.ccs is None or self.ccs_shuffled is None else self.ccs - self.ccs_shuffled

    def headline(self) -> dict[str, float]:
        """The headline numbers this set has, as floats."""
        values = {"fad": self.fad, "clap": self.clap, "ccs": self.ccs, "ccs_margin": self.ccs_margin}
        return {k: float(v) for k, v in values.items() if v is not None}

    def counts(self) -> dict[str, Any]:
        """Everything but the headline and the cache hit (details.json: a stage output, so no run facts)."""
        return {
            k: v for k, v in asdict(self).items() if k not in HEADLINE and k != "cache_hit" and v is not None
        }


@dataclass(frozen=True)
class EvaluationOutputs:
    metrics: dict[str, Any]  # numbers only (metrics.json, the DVC metric)
    details: dict[str, Any]  # what produced them (details.json)
    per_prompt: pa.Table  # one row per clip (per_prompt.parquet)
    best_seeds: dict[str, int]
    rejects: list[dict[str, str]]
    # facts of this run (which caches were hit, where): for the run record, never for an output
    run_facts: dict[str, Any] = field(default_factory=dict)


def assemble_metrics(sets: dict[str, SetScores]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics.json, the sets' counts for details.json) from per-set scores.

    ``sets`` has ``chosen`` (one clip per ranked prompt, the submitted seed: the headline), ``first_seed`` and
    ``all_seeds`` (ranked prompts), optionally ``ood`` (the chosen clips of the out-of-distribution prompts) and
    ``ceiling``. metrics.json holds numbers only: the headline at the top level, each
    other set as a block of the numbers it has; ``ccs_shuffled`` and the counts go to details.
    """
    metrics: dict[str, Any] = sets["chosen"].headline()
    for name in SECONDARY_SETS:
        if name in sets:
            metrics[name] = sets[name].headline()
    counts = {name: {"ccs_shuffled": s.ccs_shuffled, **s.counts()} for name, s in sets.items()}
    return metrics, {name: {k: v for k, v in c.items() if v is not None} for name, c in counts.items()}


def metric_sources(
    embedder: str, text_audio: str, judge: str, reference_source: str
) -> dict[str, dict[str, Any]]:
    """Per headline metric: is it the challenge's metric or an offline stand-in, and what computed it.

    ``embedder``, ``text_audio`` and ``judge`` are the ``evaluate.*`` choices of those names."""
    fad_real, clap_real = embedder == "clap", text_audio == "clap"
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
            "challenge_metric": judge == "alm",
            "what": {
                "tagger": "offline stand-in: a concept tagger trained on the train split",
                "clap": "stand-in: CLAP zero-shot concept judge (the challenge asks an audio-language model)",
            }.get(
                judge,
                f"the challenge's protocol with our model: an audio-language model ({judge}) asked yes/no per "
                "concept; the challenge's own model and question wording are not public",
            ),
        },
    }
