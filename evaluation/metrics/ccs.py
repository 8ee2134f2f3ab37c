"""CCS (concept coverage score): per clip, K/M of its prompt's M concepts judged present; averaged over clips.

The judge is pluggable (:class:`ConceptJudge`): ``judge(audio (B, D), concepts) -> per clip, per concept, bool``.

- ``tagger`` (offline default): :class:`TaggerJudge` over a :class:`evaluation.tagger.ConceptTagger` trained on
  the train split; ``audio`` are weight-free descriptors. A prompt concept the tagger has never seen is
  judged absent (and counted in ``unknown_concepts``).
- ``clap`` (real path): :class:`ClapJudge`, zero-shot. Rule: for a prompt with m_c concepts in category c, a
  concept of c is present iff cos(audio, text("<concept> music")) is among the m_c highest cosines over the
  category's contrast set (every known concept of that category: training tags plus all prompt concepts).
  Uncategorised concepts (category ``concept``) compete against every known concept.

``ccs_shuffled`` scores the same audio against a seeded derangement of the prompts (no clip keeps its own
prompt): the gap ``ccs - ccs_shuffled`` measures how much the audio follows its own text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from evaluation.challenge.prompts import UNCATEGORISED
from evaluation.metrics.tagger import ConceptTagger

log = logging.getLogger(__name__)

Concepts = Mapping[str, Sequence[str]]
Judgement = list[tuple[str, str, bool]]  # (category, concept, present) for each of a prompt's concepts
CLAP_TEMPLATES = {"genre": "{} music", "instrument": "music played on {}", "mood": "{} music"}


@runtime_checkable
class ConceptJudge(Protocol):
    name: str
    input_kind: str  # which audio representation it reads: "descriptor" or "clap"

    def judge(self, audio: np.ndarray, concepts: Sequence[Concepts]) -> list[Judgement]:
        """audio (B, D) (one row per clip), concepts: B prompts' concepts -> B judgements."""
        ...


def concept_pairs(concepts: Concepts) -> list[tuple[str, str]]:
    """(category, concept) pairs without duplicates, in category order."""
    return list(dict.fromkeys((cat, name) for cat, names in concepts.items() for name in names))


def coverage(judgements: Sequence[Judgement]) -> np.ndarray:
    """Per clip K/M -> (B,); NaN for a prompt without concepts."""
    return np.array([sum(p for *_, p in j) / len(j) if j else np.nan for j in judgements], np.float64)


def ccs(judgements: Sequence[Judgement]) -> float:
    """Mean K/M over the clips whose prompt has concepts."""
    values = coverage(judgements)
    if np.isnan(values).all():
        raise ValueError("CCS undefined: no prompt has any concept")
    if np.isnan(values).any():
        log.warning("%d prompt(s) without concepts left out of CCS", int(np.isnan(values).sum()))
    return float(np.nanmean(values))


def seeded_derangement(n: int, seed: int) -> np.ndarray:
    """A uniformly random permutation of range(n) with no fixed point (rejection sampling, ~e tries)."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 prompts, got {n}")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


class TaggerJudge:
    input_kind = "descriptor"

    def __init__(self, tagger: ConceptTagger):
        self.tagger = tagger
        self.name = tagger.name
        self.unknown_concepts: set[tuple[str, str]] = set()

    def judge(self, audio: np.ndarray, concepts: Sequence[Concepts]) -> list[Judgement]:
        present = self.tagger.present(audio)
        out = []
        for row, item in enumerate(concepts):
            judged = []
            for cat, name in concept_pairs(item):
                col = self.tagger.vocab.index(cat, name)
                if col is None:
                    if (cat, name) not in self.unknown_concepts:
                        log.warning("concept %s:%s unknown to the tagger; judged absent", cat, name)
                    self.unknown_concepts.add((cat, name))
                judged.append((cat, name, bool(col is not None and present[row, col])))
            out.append(judged)
        return out


class ClapJudge:
    """Zero-shot CLAP concept detection (rule in the module docstring); ``audio`` are CLAP audio embeddings."""

    input_kind = "clap"

    def __init__(self, embed_text: Any, vocabulary: Mapping[str, Sequence[str]], model_name: str):
        self.embed_text = embed_text
        self.vocabulary = {c: list(dict.fromkeys(v)) for c, v in vocabulary.items()}
        self.name = f"clap zero-shot top-m per category ({model_name})"
        self._text: dict[tuple[str, str], np.ndarray] = {}

    def _text_embedding(self, pairs: list[tuple[str, str]]) -> None:
        todo = [p for p in pairs if p not in self._text]
        if todo:
            texts = [CLAP_TEMPLATES.get(cat, "{} music").format(name) for cat, name in todo]
            for pair, emb in zip(todo, self.embed_text(texts), strict=True):
                self._text[pair] = np.asarray(emb, np.float64)

    def judge(self, audio: np.ndarray, concepts: Sequence[Concepts]) -> list[Judgement]:
        vocab = {c: list(v) for c, v in self.vocabulary.items()}
        for item in concepts:
            for cat, name in concept_pairs(item):
                if name not in vocab.setdefault(cat, []):
                    vocab[cat].append(name)
        every = [(c, n) for c, names in vocab.items() for n in names]
        self._text_embedding(every)
        out = []
        for row, item in enumerate(concepts):
            a = audio[row] / (np.linalg.norm(audio[row]) + 1e-12)
            pairs = concept_pairs(item)
            judged = []
            for cat, name in pairs:
                contrast = every if cat == UNCATEGORISED else [(cat, n) for n in vocab[cat]]
                m = sum(1 for c, _ in pairs if c == cat)
                if len(contrast) <= m:
                    log.warning(
                        "category %s has only %d known concepts for %d in the prompt: vacuous",
                        cat,
                        len(contrast),
                        m,
                    )
                scores = {p: float(a @ self._text[p]) for p in contrast}
                top = sorted(scores, key=scores.get, reverse=True)[:m]
                judged.append((cat, name, (cat, name) in top))
            out.append(judged)
        return out


@dataclass(frozen=True)
class CcsReport:
    """CCS of B clips against their own prompts and against a derangement of the prompts.

    ``judgements[b]`` lists (category, concept, heard) for clip b's prompt; ``coverage``/``coverage_shuffled``
    (B,) are the per-clip K/M (NaN for a prompt without concepts); ``derangement`` maps prompt i to the prompt
    whose concepts its clips are scored against in the shuffled run.
    """

    judgements: list[Judgement]
    coverage: np.ndarray
    coverage_shuffled: np.ndarray
    ccs: float
    ccs_shuffled: float
    derangement: np.ndarray

    @property
    def margin(self) -> float:
        """How much the audio follows its own text: ``ccs - ccs_shuffled``."""
        return self.ccs - self.ccs_shuffled


def ccs_report(
    judge: ConceptJudge,
    audio: np.ndarray,
    concepts: Sequence[Concepts],
    prompt_index: np.ndarray,
    shuffle_seed: int,
) -> CcsReport:
    """CCS of clips (B rows, clip b made for prompt ``prompt_index[b]``) vs the same clips under a derangement.

    ``concepts`` holds one entry per prompt; the derangement permutes prompts, so all seeds of a prompt are
    scored against the same other prompt.
    """
    perm = seeded_derangement(len(concepts), shuffle_seed)
    own = judge.judge(audio, [concepts[i] for i in prompt_index])
    shuffled = judge.judge(audio, [concepts[perm[i]] for i in prompt_index])
    return CcsReport(own, coverage(own), coverage(shuffled), ccs(own), ccs(shuffled), perm)
