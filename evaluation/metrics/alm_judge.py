"""CCS judge by an audio-language model: one yes/no question per concept, answered from next-token probabilities.

The challenge's CCS reportedly asks a Qwen audio model whether each of a prompt's concepts is present (its
evaluation code was not available here; see docs/evaluation.md for what is and is not known). This judge does
that through transformers' ``Qwen2AudioForConditionalGeneration`` and its processor, loaded from a local
directory (``evaluate.alm_path``, e.g. a snapshot of ``Qwen/Qwen2-Audio-7B-Instruct``); nothing is downloaded.

Per (clip, concept): the first 10 s of the clip, mono at the processor's rate (16 kHz), and the chat
``Audio 1: <audio>\\n<question> Answer yes or no.`` with the assistant turn opened. The model runs once (no
generation); at the last prompt token, P(yes) = softmax over {yes, no} of the logsumexp of the logits of each
word's single-token spellings ("yes", "Yes", " yes", " Yes" and likewise "no"). The concept is present iff
P(yes) >= 0.5. Items are batched (``evaluate.alm_batch_size``) with right padding, so every item sees the
same positions as it would alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from evaluation.metrics.ccs import Concepts, Judgement, concept_pairs
from evaluation.metrics.excerpt import SCORED_SECONDS, scored_excerpt
from model.audio.io import load_audio
from model.runtime.devices import resolve_device
from model.runtime.errors import InputError

log = logging.getLogger(__name__)

ALM_MODEL = "Qwen/Qwen2-Audio-7B-Instruct"
HOW_TO_GET = (
    f"download an audio-language model, e.g. `huggingface-cli download {ALM_MODEL} --local-dir DIR`, "
    "and set evaluate.alm_path: DIR in params.yaml"
)
QUESTIONS = {
    "genre": "Is this music in the {} genre?",
    "instrument": "Can you hear {} in this music?",
    "mood": "Does this music sound {}?",
}
OTHER_QUESTION = "Does this music match the description '{}'?"
ANSWER_FORMAT = " Answer yes or no."
YES_SPELLINGS = ("yes", "Yes", " yes", " Yes")
NO_SPELLINGS = ("no", "No", " no", " No")
SUPPORTED_MODEL_TYPES = ("qwen2_audio",)


class AlmWeightsError(InputError, FileNotFoundError):
    """The audio-language model directory is unset, missing or unusable."""


def question(category: str, concept: str) -> str:
    """The yes/no question asked about one concept of a category."""
    return QUESTIONS.get(category, OTHER_QUESTION).format(concept) + ANSWER_FORMAT


def answer_token_ids(tokenizer: Any, spellings: Sequence[str]) -> list[int]:
    """Ids of the spellings that are one token each (the ones a next-token distribution can score)."""
    ids = []
    for word in spellings:
        tokens = tokenizer.encode(word, add_special_tokens=False)
        if len(tokens) == 1 and tokens[0] not in ids:
            ids.append(int(tokens[0]))
    return ids


@dataclass(frozen=True)
class AlmBundle:
    """A loaded audio-language model (eval mode), its processor, the yes/no token ids and its directory."""

    model: Any
    processor: Any
    yes_ids: tuple[int, ...]
    no_ids: tuple[int, ...]
    source: str


def check_alm_dir(path: str) -> Path:
    """``evaluate.alm_path`` must be a local model directory (with config.json); cheap, before any heavy work."""
    if not path:
        raise AlmWeightsError(
            f"params.yaml: evaluate.alm_path is empty but evaluate.judge is alm; {HOW_TO_GET}"
        )
    root = Path(path).expanduser()
    if not root.is_dir() or not (root / "config.json").is_file():
        what = "has no config.json" if root.is_dir() else "does not exist"
        raise AlmWeightsError(f"params.yaml: evaluate.alm_path = {path!r} {what}; {HOW_TO_GET}")
    return root


def load_alm(path: str, device: str | None = "auto") -> AlmBundle:
    """Load ``evaluate.alm_path`` (a local transformers directory of a Qwen2-Audio model and its processor)."""
    root = check_alm_dir(path)
    from transformers import AutoConfig, AutoProcessor, Qwen2AudioForConditionalGeneration

    config = AutoConfig.from_pretrained(root, local_files_only=True)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise AlmWeightsError(
            f"evaluate.alm_path {root}: model_type {config.model_type!r}; the ALM judge runs "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} models ({ALM_MODEL})"
        )
    try:
        processor = AutoProcessor.from_pretrained(root, local_files_only=True)
    except OSError as exc:
        raise AlmWeightsError(
            f"evaluate.alm_path {root}: no usable processor/tokenizer files ({exc})"
        ) from exc
    target = resolve_device(device, "ALM judge device")
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    model = Qwen2AudioForConditionalGeneration.from_pretrained(root, local_files_only=True, dtype=dtype)
    model = model.to(target).eval()
    yes, no = (
        answer_token_ids(processor.tokenizer, YES_SPELLINGS),
        answer_token_ids(processor.tokenizer, NO_SPELLINGS),
    )
    if not yes or not no:
        raise AlmWeightsError(
            f"evaluate.alm_path {root}: the tokenizer has no single-token 'yes'/'no' "
            f"(found yes {yes}, no {no}); the judge reads their next-token probabilities"
        )
    processor.tokenizer.padding_side = "right"
    log.info("ALM judge: %s on %s (%s); yes ids %s, no ids %s", root, target, dtype, yes, no)
    return AlmBundle(model, processor, tuple(yes), tuple(no), str(root))


class AlmJudge:
    """CCS judge asking an audio-language model about each concept; ``judge`` reads clips from their paths."""

    input_kind = "path"

    def __init__(self, bundle: AlmBundle, batch_size: int = 4):
        self.bundle = bundle
        self.batch_size = batch_size
        self.sample_rate = int(bundle.processor.feature_extractor.sampling_rate)
        self.name = f"alm yes/no per concept ({Path(bundle.source).name}, via transformers Qwen2-Audio)"
        self.last_probabilities: list[list[float]] = []

    def clip_audio(self, path: str) -> np.ndarray:
        """The scored first 10 s of a clip, mono at the processor's rate -> (S,) float32."""
        audio, sr = load_audio(path, duration_s=SCORED_SECONDS)
        return scored_excerpt(audio, sr, self.sample_rate).mean(axis=0).astype(np.float32)

    def prompt(self, text: str) -> str:
        conversation = [
            {
                "role": "user",
                "content": [{"type": "audio", "audio_url": "clip"}, {"type": "text", "text": text}],
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
