"""Best-of-N seed selection: per prompt, keep the seed whose clip scores best on continuous, comparable scores.

The paper chose by FAD and CLAP; FAD is a set statistic, so each clip gets its own contribution instead:

- ``fad_distance``: the mean over the clip's windows of their squared Mahalanobis distance to the reference
  Gaussian (``evaluation.metrics.fad.mahalanobis_to_reference``) — lower is more like the reference set;
- ``text_audio``: the clip's text–audio cosine with its own caption — higher is better.

Both are standardised over all clips of the run (z-scores; the distance on a log scale, as a squared distance has a
long right tail), so one unit means the same spread for either, and combined into one score per clip (higher is
better). Rules (``evaluate.best_seed_rule``):

- ``fad_clap`` (default): ``score = z(text_audio) − z(log fad_distance)``;
- ``fad``: ``score = −z(log fad_distance)``; ``clap``: ``score = z(text_audio)``.

Within a prompt the highest score wins; an exact tie goes to the lower seed index. (Mean *ranks* of two criteria
tie whenever two seeds split the criteria 1–1, which with the default two seeds made ``fad_clap`` act as ``fad``.)
``compare_with_first_seed`` measures a selection on scores it did not use (held-out judgement).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

BEST_SEED_RULES = ("fad_clap", "fad", "clap")
RULE_WEIGHTS = {"fad_clap": (1.0, 1.0), "fad": (1.0, 0.0), "clap": (0.0, 1.0)}  # (fad, text_audio)


@dataclass(frozen=True)
class BestOfN:
    """Per clip (B,): ``chosen``, ``score`` (higher is better), ``z_fad`` (of log distance; lower is better),
    ``z_clap``; the descriptive within-prompt ``rank_fad``, ``rank_clap``, ``mean_rank``;
    ``best_seeds`` prompt_id -> seed."""

    chosen: np.ndarray
    score: np.ndarray
    z_fad: np.ndarray
    z_clap: np.ndarray
    rank_fad: np.ndarray
    rank_clap: np.ndarray
    mean_rank: np.ndarray
    best_seeds: dict[str, int]


def standardise(values: np.ndarray) -> np.ndarray:
    """``(x − mean) / std`` over all entries (B,); all zeros when they do not vary."""
    values = np.asarray(values, np.float64)
    std = values.std()
    return np.zeros_like(values) if not np.isfinite(std) or std == 0 else (values - values.mean()) / std


def clip_scores(fad_distance: np.ndarray, text_audio: np.ndarray, rule: str = "fad_clap") -> np.ndarray:
    """The selection score of each clip (B,) under ``rule``; higher is better (see module docstring)."""
    if rule not in RULE_WEIGHTS:
        raise ValueError(
            f"params.yaml: evaluate.best_seed_rule is {rule!r}; expected one of {', '.join(BEST_SEED_RULES)}"
        )
    w_fad, w_clap = RULE_WEIGHTS[rule]
    log_fad = np.log(np.maximum(np.asarray(fad_distance, np.float64), 1e-12))
    return w_clap * standardise(text_audio) - w_fad * standardise(log_fad)


def pick_per_prompt(
    prompt_ids: Sequence[str], seeds: Sequence[int], score: np.ndarray
) -> tuple[np.ndarray, dict[str, int]]:
    """Per prompt the clip of highest ``score`` (B,), ties to the lower seed; (chosen mask (B,), prompt -> seed)."""
    score, seeds_arr = np.asarray(score, np.float64), np.asarray(seeds)
    if not (len(prompt_ids) == len(seeds_arr) == len(score)):
        raise ValueError("prompt_ids, seeds and scores must have one entry per clip")
    if not np.all(np.isfinite(score)):
        raise ValueError("best-of-N scores must be finite")
    chosen, best = np.zeros(len(score), bool), {}
    for pid, rows in _rows_by_prompt(prompt_ids).items():
        pick = rows[np.lexsort((seeds_arr[rows], -score[rows]))[0]]
        chosen[pick] = True
        best[pid] = int(seeds_arr[pick])
    return chosen, best


def choose_best_seeds(
    prompt_ids: Sequence[str],
    seeds: Sequence[int],
    fad_distance: np.ndarray,
    text_audio: np.ndarray,
    rule: str = "fad_clap",
) -> BestOfN:
    """Pick one seed per prompt among clips (B rows) by ``rule`` (see module docstring)."""
    n = len(prompt_ids)
    if not (len(seeds) == len(fad_distance) == len(text_audio) == n):
        raise ValueError("prompt_ids, seeds, fad_distance and text_audio must have one entry per clip")
    fad_distance, text_audio = np.asarray(fad_distance, np.float64), np.asarray(text_audio, np.float64)
    score = clip_scores(fad_distance, text_audio, rule)
    chosen, best = pick_per_prompt(prompt_ids, seeds, score)
    rank_fad, rank_clap = np.zeros(n), np.zeros(n)
    for rows in _rows_by_prompt(prompt_ids).values():
        rank_fad[rows] = rankdata(fad_distance[rows], method="average")
        rank_clap[rows] = rankdata(-text_audio[rows], method="average")
    z_fad = standardise(np.log(np.maximum(fad_distance, 1e-12)))
    return BestOfN(
        chosen, score, z_fad, standardise(text_audio), rank_fad, rank_clap, (rank_fad + rank_clap) / 2.0, best
    )


@dataclass(frozen=True)
class HeldOutComparison:
    """A selection judged on a per-clip value it was not chosen by: means over prompts, and per-prompt counts."""

    chosen_mean: float
    first_seed_mean: float
    oracle_mean: float  # the best any selection could reach on this value
    better: int  # prompts where the chosen clip beats the first seed's
    worse: int
    same: int  # the first seed itself was chosen (or an exact tie)

    @property
    def gain(self) -> float:
        return self.chosen_mean - self.first_seed_mean


def compare_with_first_seed(
    prompt_ids: Sequence[str],
    seeds: Sequence[int],
    chosen: np.ndarray,
    values: np.ndarray,
    higher_is_better: bool = True,
) -> HeldOutComparison:
    """Judge the ``chosen`` clips (mask (B,)) against each prompt's lowest seed on ``values`` (B,)."""
    values, seeds_arr = np.asarray(values, np.float64), np.asarray(seeds)
    sign = 1.0 if higher_is_better else -1.0
    picked, first, oracle = [], [], []
    for rows in _rows_by_prompt(prompt_ids).values():
        picked.append(values[rows[np.asarray(chosen)[rows]]][0])
        first.append(values[rows[np.argmin(seeds_arr[rows])]])
        oracle.append(values[rows].max() if higher_is_better else values[rows].min())
    diff = sign * (np.array(picked) - np.array(first))
    return HeldOutComparison(
        float(np.mean(picked)),
        float(np.mean(first)),
        float(np.mean(oracle)),
        int((diff > 0).sum()),
        int((diff < 0).sum()),
        int((diff == 0).sum()),
    )


def _rows_by_prompt(prompt_ids: Sequence[str]) -> dict[str, np.ndarray]:
    rows: dict[str, list[int]] = {}
    for i, pid in enumerate(prompt_ids):
        rows.setdefault(pid, []).append(i)
    return {pid: np.array(r) for pid, r in rows.items()}


def held_out_study(table: Any) -> list[dict[str, Any]]:
    """Every rule judged on the per-clip values it did not select by, against the first seed.

    ``table``: ``reports/per_prompt.parquet`` (columns prompt_id, seed, fad_distance, text_audio, ccs). Selecting
    by ``fad`` is judged on text_audio and ccs, ``clap`` on fad_distance and ccs, ``fad_clap`` on ccs (the concept
    judge is a model neither score uses).
    """
    cols = table.to_pydict() if hasattr(table, "to_pydict") else dict(table)
    prompts, seeds = list(cols["prompt_id"]), list(cols["seed"])
    held_out = {"fad": ("text_audio", "ccs"), "clap": ("fad_distance", "ccs"), "fad_clap": ("ccs",)}
    rows = []
    for rule, judges in held_out.items():
        chosen = choose_best_seeds(prompts, seeds, cols["fad_distance"], cols["text_audio"], rule).chosen
        for judge in judges:
            values = np.asarray(cols[judge], np.float64)
            cmp = compare_with_first_seed(
                prompts, seeds, chosen, values, higher_is_better=judge != "fad_distance"
            )
            rows.append(
                {
                    "rule": rule,
                    "judged_on": judge,
                    "chosen": cmp.chosen_mean,
                    "first_seed": cmp.first_seed_mean,
                    "gain": cmp.gain,
                    "oracle": cmp.oracle_mean,
                    "better": cmp.better,
                    "worse": cmp.worse,
                    "same": cmp.same,
                }
            )
    return rows
