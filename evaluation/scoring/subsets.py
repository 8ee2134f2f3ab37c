"""Which clips each scored set holds: the headline on the ranked prompts, ``ood`` on the others.

The challenge ranks its in-distribution prompts only (reportedly 80 of 100) and observes the rest. So every set of
metrics.json is a set of rows of the per-clip table restricted by the prompts' ``split``:

- ``chosen`` (the headline ``fad``/``clap``/``ccs``/``ccs_margin``): the chosen seed of every ranked prompt;
- ``first_seed``: seed 0 of every ranked prompt; ``all_seeds``: every clip of every ranked prompt;
- ``ood``: the chosen seed of every out-of-distribution prompt (only when the prompt set has some).

Every prompt, ranked or not, has its best seed chosen and submitted; only the scoring splits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evaluation.challenge.ood_split import OOD, RANKED


class NoRankedPromptError(ValueError):
    """Every prompt is out of distribution, so the headline (ranked prompts) is undefined."""


def set_rows(split: Sequence[str], seed: Sequence[int], chosen: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices of each scored set, from each clip's prompt split (B,), seed (B,) and chosen flag (B,) bool."""
    split_arr, seed_arr = np.asarray(split), np.asarray(seed)
    ranked, ood = split_arr == RANKED, split_arr == OOD
    if not ranked.any():
        raise NoRankedPromptError(
            "no prompt is ranked (every prompt has split: ood), so the headline metrics are undefined; "
            "mark the prompts the challenge ranks with split: ranked"
        )
    chosen = np.asarray(chosen, bool)
    rows = {
        "chosen": np.flatnonzero(chosen & ranked),
        "first_seed": np.flatnonzero((seed_arr == seed_arr.min()) & ranked),
        "all_seeds": np.flatnonzero(ranked),
    }
    if ood.any():
        rows["ood"] = np.flatnonzero(chosen & ood)
    return rows
