"""Best-of-N seed selection: per prompt, keep the seed that is both closest to the reference and best matches its text.

The paper chose by FAD and CLAP; FAD is a set statistic, so each clip gets its own contribution instead:

- ``fad_distance``: the mean over the clip's windows of their squared Mahalanobis distance to the reference
  Gaussian (``evaluation.fad.mahalanobis_to_reference``) — lower is more like the reference set;
- ``text_audio``: the clip's text–audio cosine with its own caption — higher is better.

Rules (``evaluate.best_seed_rule``):
- ``fad_clap`` (default): within a prompt rank the seeds by ``fad_distance`` (ascending) and by ``text_audio``
  (descending), average ranks for ties; keep the lowest mean of the two ranks. Ties: lower ``fad_distance``,
  then higher ``text_audio``, then the lower seed index.
- ``fad``: lowest ``fad_distance``; ``clap``: highest ``text_audio`` (ties: lower seed index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

BEST_SEED_RULES = ("fad_clap", "fad", "clap")


@dataclass(frozen=True)
class BestOfN:
    """Per clip (B,): ``chosen``, ``rank_fad``, ``rank_clap``, ``mean_rank``; ``best_seeds`` prompt_id -> seed."""

    chosen: np.ndarray
    rank_fad: np.ndarray
    rank_clap: np.ndarray
    mean_rank: np.ndarray
    best_seeds: dict[str, int]


def choose_best_seeds(prompt_ids: Sequence[str], seeds: Sequence[int], fad_distance: np.ndarray,
                      text_audio: np.ndarray, rule: str = "fad_clap") -> BestOfN:
    """Pick one seed per prompt among clips (B rows) by ``rule`` (see module docstring)."""
    if rule not in BEST_SEED_RULES:
        raise ValueError(f"params.yaml: evaluate.best_seed_rule is {rule!r}; expected one of {', '.join(BEST_SEED_RULES)}")
    n = len(prompt_ids)
    if not (len(seeds) == len(fad_distance) == len(text_audio) == n):
        raise ValueError("prompt_ids, seeds, fad_distance and text_audio must have one entry per clip")
    fad_distance, text_audio = np.asarray(fad_distance, np.float64), np.asarray(text_audio, np.float64)
    seeds_arr = np.asarray(seeds)
    rank_fad, rank_clap, chosen = np.zeros(n), np.zeros(n), np.zeros(n, bool)
    best: dict[str, int] = {}
    for pid in dict.fromkeys(prompt_ids):
        rows = np.array([i for i, p in enumerate(prompt_ids) if p == pid])
        rank_fad[rows] = rankdata(fad_distance[rows], method="average")
        rank_clap[rows] = rankdata(-text_audio[rows], method="average")
        if rule == "fad_clap":
            order = np.lexsort((seeds_arr[rows], -text_audio[rows], fad_distance[rows],
                                rank_fad[rows] + rank_clap[rows]))
        elif rule == "fad":
            order = np.lexsort((seeds_arr[rows], fad_distance[rows]))
        else:
            order = np.lexsort((seeds_arr[rows], -text_audio[rows]))
        pick = rows[order[0]]
        chosen[pick] = True
        best[pid] = int(seeds_arr[pick])
    return BestOfN(chosen, rank_fad, rank_clap, (rank_fad + rank_clap) / 2.0, best)
