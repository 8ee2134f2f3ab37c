"""The built-in prompt set's ranked / out-of-distribution split: a stated, reproducible 80/20 rule.

The challenge reportedly ranks 80 of its 100 test prompts (in-distribution) and only observes 20
(out-of-distribution). Its own split is not published, so the built-in set (the test split's tracks) gets one by
this rule: the ``round(0.2 · n)`` prompts whose tag combination is least covered by the training split are
``ood``, the rest ``ranked``. "Least covered" orders prompts by, in turn (larger = more out of distribution):

1. the number of the prompt's tags (``category:tag``) that no training track has;
2. the fraction of the prompt's tag pairs that no training track has together (0 for a prompt with < 2 tags);
3. the rarity of its rarest pair: minus the number of training tracks holding that pair (for a single tag, that
   tag's count; a prompt without tags is the least novel);
4. ties: the sha256 of the prompt id (stable, independent of order and of any seed).

On MTG-Jamendo the first criterion picks prompts with tags the model never trained on; on the synthetic set,
where every tag is seen, the pair criteria pick the unusual combinations of genre, instruments and mood, so both
give a real 80/20 split. The rule reads nothing but the tags, so the split of a prompt never depends on the
audio or on the model.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import combinations
from typing import Any

RANKED, OOD = "ranked", "ood"  # the values of a prompt's ``split``
OOD_FRACTION = 0.2  # reported: 20 of the 100 test prompts are out of distribution


def tag_set(concepts: Mapping[str, Sequence[str]]) -> frozenset[str]:
    """``{"genre": ["rock"], ...}`` -> ``{"genre:rock", ...}``."""
    return frozenset(f"{category}:{tag}" for category, tags in concepts.items() for tag in tags)


def coverage_counts(train: Iterable[frozenset[str]]) -> tuple[Counter, Counter]:
    """Training tracks per tag and per (sorted) tag pair."""
    tags: Counter = Counter()
    pairs: Counter = Counter()
    for track in train:
        tags.update(track)
        pairs.update(combinations(sorted(track), 2))
    return tags, pairs


def novelty(tags: frozenset[str], tag_counts: Counter, pair_counts: Counter) -> tuple[int, float, float]:
    """(unseen tags, unseen pair fraction, minus the rarest pair's count): larger is more out of distribution."""
    if not tags:
        return 0, 0.0, -math.inf
    unseen = sum(1 for t in tags if tag_counts[t] == 0)
    pairs = list(combinations(sorted(tags), 2))
    if not pairs:
        return unseen, 0.0, -float(tag_counts[next(iter(tags))])
    unseen_pairs = sum(1 for p in pairs if pair_counts[p] == 0) / len(pairs)
    return unseen, unseen_pairs, -float(min(pair_counts[p] for p in pairs))


def n_ood(n_prompts: int, fraction: float = OOD_FRACTION) -> int:
    """How many of ``n_prompts`` are out of distribution (half rounds up: 20 of 100, 1 of 5, 0 of 2)."""
    return int(math.floor(fraction * n_prompts + 0.5))


def split_by_training_coverage(
    prompts: Sequence[Any], train_concepts: Iterable[Mapping[str, Sequence[str]]]
) -> list[Any]:
    """``prompts`` (:class:`~evaluation.challenge.prompts.Prompt`, order kept) with ``split`` set by the rule of
    the module docstring; ``train_concepts``: the tags of each training track, ``{category: [tag, ...]}``."""
    tag_counts, pair_counts = coverage_counts(tag_set(c) for c in train_concepts)

    def key(p: Any) -> tuple[float, ...]:
        unseen, unseen_pairs, rarity = novelty(tag_set(p.concepts), tag_counts, pair_counts)
        tiebreak = int.from_bytes(hashlib.sha256(p.prompt_id.encode()).digest()[:8], "big")
        return (-unseen, -unseen_pairs, -rarity, tiebreak)

    ood = {p.prompt_id for p in sorted(prompts, key=key)[: n_ood(len(prompts))]}
    return [replace(p, split=OOD if p.prompt_id in ood else RANKED) for p in prompts]
