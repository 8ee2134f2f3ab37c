"""CCS judge by an audio-language model: one yes/no question per concept, answered from next-token probabilities.

The challenge's CCS reportedly asks Qwen3-Omni whether each of a prompt's concepts is present (its evaluation code
was not available here; see docs/evaluation.md for what is and is not known). This judge does that with a
Qwen3-Omni or Qwen2-Audio checkpoint from a local directory (``evaluate.alm_path``), chosen by the checkpoint's
``model_type`` and loaded through transformers' own classes (:mod:`evaluation.metrics.alm_models`).

Per (clip, concept): the first 10 s of the clip, mono at the processor's rate (16 kHz), and the chat turn
``<audio>`` + ``<question> Answer yes or no.`` with the assistant turn opened (each model's own chat template).
The model runs once (no generation); at the last prompt token, P(yes) = softmax over {yes, no} of the logsumexp of
the logits of each word's single-token spellings ("yes", "Yes", " yes", " Yes" and likewise "no"). The concept is
present iff P(yes) >= 0.5. Items are batched (``evaluate.alm_batch_size``) with right padding, so every item sees
the same positions as it would alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from evaluation.metrics.alm_models import AlmBundle
from evaluation.metrics.alm_models import load_alm as load_model
from evaluation.metrics.ccs import Concepts, Judgement, concept_pairs
from evaluation.metrics.excerpt import SCORED_SECONDS, scored_excerpt
from model.audio.io import load_audio

log = logging.getLogger(__name__)

QUESTIONS = {
    "genre": "Is this music in the {} genre?",
    "instrument": "Can you hear {} in this music?",
    "mood": "Does this music sound {}?",
}
OTHER_QUESTION = "Does this music match the description '{}'?"
ANSWER_FORMAT = " Answer yes or no."
YES_SPELLINGS = ("yes", "Yes", " yes", " Yes")
NO_SPELLINGS = ("no", "No", " no", " No")


def question(category: str, concept: str) -> str:
    """The yes/no question asked about one concept of a category."""
    return QUESTIONS.get(category, OTHER_QUESTION).format(concept) + ANSWER_FORMAT


def load_alm(path: str, device: str | None = "auto") -> AlmBundle:
    """The judge's model from ``evaluate.alm_path`` (Qwen3-Omni or Qwen2-Audio), with its yes/no token ids."""
    return load_model(path, device, YES_SPELLINGS, NO_SPELLINGS)


class AlmJudge:
    """CCS judge asking an audio-language model about each concept; ``judge`` reads clips from their paths."""

    input_kind = "path"

    def __init__(self, bundle: AlmBundle, batch_size: int = 4):
        self.bundle = bundle
        self.batch_size = batch_size
        self.sample_rate = int(bundle.processor.feature_extractor.sampling_rate)
        self.name = f"alm yes/no per concept ({Path(bundle.source).name}, via transformers {bundle.family})"
        self.last_probabilities: list[list[float]] = []

    def clip_audio(self, path: str) -> np.ndarray:
        """The scored first 10 s of a clip, mono at the processor's rate -> (S,) float32."""
        audio, sr = load_audio(path, duration_s=SCORED_SECONDS)
        return scored_excerpt(audio, sr, self.sample_rate).mean(axis=0).astype(np.float32)

    def prompt(self, text: str) -> str:
        conversation = [
            {
                "role": "user",
                "content": [{"type": "audio", self.bundle.audio_key: "clip"}, {"type": "text", "text": text}],
            }
        ]
        return self.bundle.processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=False
        )

    @torch.no_grad()
    def yes_probability(self, audios: Sequence[np.ndarray], questions: Sequence[str]) -> np.ndarray:
        """N (audio (S,), question) pairs, one batch -> (N,) P(yes | yes or no) at the answer's first token."""
        model, processor = self.bundle.model, self.bundle.processor
        inputs = processor(
            text=[self.prompt(q) for q in questions],
            audio=list(audios),
            sampling_rate=self.sample_rate,
            return_tensors="pt",
            padding=True,
            padding_side="right",  # Qwen3-Omni's processor pads left by default; the answer is read per item
        )
        device = next(model.parameters()).device
        inputs = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in inputs.items()}
        if "input_features" in inputs:
            inputs["input_features"] = inputs["input_features"].to(model.dtype)
        hidden = model.model(**inputs).last_hidden_state  # (N, L, H), right-padded
        last = inputs["attention_mask"].sum(dim=1) - 1
        logits = model.lm_head(hidden[torch.arange(hidden.shape[0], device=device), last]).float()  # (N, V)
        yes = torch.logsumexp(logits[:, list(self.bundle.yes_ids)], dim=1)
        no = torch.logsumexp(logits[:, list(self.bundle.no_ids)], dim=1)
        return torch.sigmoid(yes - no).cpu().double().numpy()

    def judge(self, audio: np.ndarray, concepts: Sequence[Concepts]) -> list[Judgement]:
        """audio: (B,) clip paths; concepts: B prompts' concepts -> B judgements (P(yes) >= 0.5 is present)."""
        items = [(row, cat, name) for row, item in enumerate(concepts) for cat, name in concept_pairs(item)]
        cache: dict[int, np.ndarray] = {}
        probs = np.zeros(len(items))
        for start in tqdm(range(0, len(items), self.batch_size), desc="alm judge", unit="batch", leave=False):
            batch = items[start : start + self.batch_size]
            for row, *_ in batch:
                if row not in cache:
                    cache[row] = self.clip_audio(str(audio[row]))
            probs[start : start + len(batch)] = self.yes_probability(
                [cache[row] for row, *_ in batch], [question(cat, name) for _, cat, name in batch]
            )
            cache = {
                row: clip for row, clip in cache.items() if row >= batch[-1][0]
            }  # items come in row order
        out: list[Judgement] = [[] for _ in concepts]
        self.last_probabilities = [[] for _ in concepts]
        for (row, cat, name), p in zip(items, probs, strict=True):
            out[row].append((cat, name, bool(p >= 0.5)))
            self.last_probabilities[row].append(float(p))
        return out
