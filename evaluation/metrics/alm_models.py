"""Loading the audio-language model of the CCS judge: Qwen2-Audio or Qwen3-Omni, chosen by the checkpoint's config.

``load_alm(evaluate.alm_path)`` reads ``config.json``'s ``model_type`` and loads, through transformers' own classes
(nothing is downloaded; the directory is a local snapshot):

- ``qwen2_audio`` (e.g. ``Qwen/Qwen2-Audio-7B-Instruct``): ``Qwen2AudioForConditionalGeneration`` and its
  ``AutoProcessor`` (Whisper front end, 16 kHz);
- ``qwen3_omni_moe`` (e.g. ``Qwen/Qwen3-Omni-30B-A3B-Instruct``, the judge the challenge reportedly uses):
  ``Qwen3OmniMoeForConditionalGeneration`` with ``enable_audio_output=False`` (the talker and code2wav, which
  speak, are never built or loaded) and its thinker, ``Qwen3OmniMoeThinkerForConditionalGeneration``, is the judge;
- ``qwen3_omni_moe_thinker`` (a thinker saved on its own): ``Qwen3OmniMoeThinkerForConditionalGeneration``.

Qwen3-Omni's processor is ``Qwen3OmniMoeProcessor``; ``AutoProcessor`` also builds its video processor, which
needs torchvision. Where that fails (this project's CPU build has no working torchvision), the same processor class
is built from the snapshot's tokenizer, feature extractor and chat template without the image and video
processors (:class:`AudioTextOmniProcessor`): the judge sends audio and text only, so every input it makes is the
one the full processor makes.

Every bundle exposes the language model as ``model`` with ``model.model(**inputs).last_hidden_state`` and
``model.lm_head``, so the judge's protocol (:mod:`evaluation.metrics.alm_judge`) is one code path for both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.runtime.devices import resolve_device
from model.runtime.errors import InputError

log = logging.getLogger(__name__)

ALM_MODELS = {
    "qwen2_audio": "Qwen2-Audio",
    "qwen3_omni_moe": "Qwen3-Omni",
    "qwen3_omni_moe_thinker": "Qwen3-Omni thinker",
}
REPORTED_JUDGE = "Qwen/Qwen3-Omni-30B-A3B-Instruct"
HOW_TO_GET = (
    f"download an audio-language model, e.g. `huggingface-cli download {REPORTED_JUDGE} --local-dir DIR` "
    "(or Qwen/Qwen2-Audio-7B-Instruct), and set evaluate.alm_path: DIR in params.yaml"
)
CONTENT_KEY = {"Qwen2-Audio": "audio_url"}  # how a chat turn names its audio for each template ("audio" else)


class AlmWeightsError(InputError, FileNotFoundError):
    """The audio-language model directory is unset, missing or unusable."""


@dataclass(frozen=True)
class AlmBundle:
    """A loaded audio-language model (eval mode; ``model.model`` + ``model.lm_head``), its processor, the yes/no
    token ids, its directory and its family (Qwen2-Audio, Qwen3-Omni)."""

    model: Any
    processor: Any
    yes_ids: tuple[int, ...]
    no_ids: tuple[int, ...]
    source: str
    family: str = "Qwen2-Audio"

    @property
    def audio_key(self) -> str:
        return CONTENT_KEY.get(self.family, "audio")


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


def answer_token_ids(tokenizer: Any, spellings: Sequence[str]) -> list[int]:
    """Ids of the spellings that are one token each (the ones a next-token distribution can score)."""
    ids = []
    for word in spellings:
        tokens = tokenizer.encode(word, add_special_tokens=False)
        if len(tokens) == 1 and tokens[0] not in ids:
            ids.append(int(tokens[0]))
    return ids


def model_type_of(root: Path) -> str:
    """``model_type`` of the checkpoint's config.json (refused unless the judge can run it)."""
    try:
        model_type = json.loads((root / "config.json").read_text()).get("model_type")
    except json.JSONDecodeError as exc:
        raise AlmWeightsError(f"evaluate.alm_path {root}: config.json is not valid JSON ({exc.msg})") from exc
    if model_type not in ALM_MODELS:
        raise AlmWeightsError(
            f"evaluate.alm_path {root}: model_type {model_type!r}; the ALM judge runs "
            f"{', '.join(f'{k} ({v})' for k, v in ALM_MODELS.items())} checkpoints; {HOW_TO_GET}"
        )
    return model_type


def load_alm(
    path: str, device: str | None = "auto", yes: Sequence[str] = (), no: Sequence[str] = ()
) -> AlmBundle:
    """Load ``evaluate.alm_path`` (module docstring); ``yes``/``no``: the answer spellings whose single-token ids
    the judge reads."""
    root = check_alm_dir(path)
    model_type = model_type_of(root)
    target = resolve_device(device, "ALM judge device")
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    if model_type == "qwen2_audio":
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        processor = _processor(lambda: AutoProcessor.from_pretrained(root, local_files_only=True), root)
        model = Qwen2AudioForConditionalGeneration.from_pretrained(root, local_files_only=True, dtype=dtype)
    else:
        from transformers import (
            Qwen3OmniMoeForConditionalGeneration,
            Qwen3OmniMoeThinkerForConditionalGeneration,
        )

        processor = _processor(lambda: load_omni_processor(root), root)
        if model_type == "qwen3_omni_moe":
            # the thinker alone answers in text; enable_audio_output=False never builds the speaking talker
            model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(
                root, local_files_only=True, dtype=dtype, enable_audio_output=False
            ).thinker
        else:
            model = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(
                root, local_files_only=True, dtype=dtype
            )
    model = model.to(target).eval()
    yes_ids, no_ids = answer_token_ids(processor.tokenizer, yes), answer_token_ids(processor.tokenizer, no)
    if not yes_ids or not no_ids:
        raise AlmWeightsError(
            f"evaluate.alm_path {root}: the tokenizer has no single-token 'yes'/'no' "
            f"(found yes {yes_ids}, no {no_ids}); the judge reads their next-token probabilities"
        )
    processor.tokenizer.padding_side = "right"
    family = ALM_MODELS[model_type].removesuffix(" thinker")
    log.info(
        "ALM judge: %s (%s) on %s (%s); yes ids %s, no ids %s", root, family, target, dtype, yes_ids, no_ids
    )
    return AlmBundle(model, processor, tuple(yes_ids), tuple(no_ids), str(root), family)


def _processor(load: Any, root: Path) -> Any:
    try:
        return load()
    except OSError as exc:
        raise AlmWeightsError(
            f"evaluate.alm_path {root}: no usable processor/tokenizer files ({exc})"
        ) from exc


def load_omni_processor(root: Path) -> Any:
    """Qwen3-Omni's processor from a snapshot: ``AutoProcessor``, or without its image/video parts (module
    docstring) when those cannot be built here."""
    from transformers import AutoFeatureExtractor, AutoProcessor, AutoTokenizer

    try:
        return AutoProcessor.from_pretrained(root, local_files_only=True)
    except (ImportError, ValueError, TypeError, AttributeError) as exc:
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        log.info("Qwen3-Omni processor without its image and video processors (%s)", why)
    tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True)
    features = AutoFeatureExtractor.from_pretrained(root, local_files_only=True)
    return AudioTextOmniProcessor(
        feature_extractor=features, tokenizer=tokenizer, chat_template=_chat_template(root, tokenizer)
    )


def _chat_template(root: Path, tokenizer: Any) -> str | None:
    """The processor's chat template (``chat_template.jinja`` or ``chat_template.json``), else the tokenizer's."""
    if (root / "chat_template.jinja").is_file():
        return (root / "chat_template.jinja").read_text(encoding="utf-8")
    if (root / "chat_template.json").is_file():
        return json.loads((root / "chat_template.json").read_text(encoding="utf-8")).get("chat_template")
    return getattr(tokenizer, "chat_template", None)


def _audio_text_processor_class() -> type:
    from transformers import Qwen3OmniMoeProcessor

    class _AudioTextOmniProcessor(Qwen3OmniMoeProcessor):
        """``Qwen3OmniMoeProcessor`` without image and video processors: text and audio only."""

        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name in ("image_processor", "video_processor") and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    return _AudioTextOmniProcessor


def AudioTextOmniProcessor(**parts: Any) -> Any:  # noqa: N802 (builds a class instance)
    """A ``Qwen3OmniMoeProcessor`` for text and audio only (``feature_extractor``, ``tokenizer``,
    ``chat_template``)."""
    return _audio_text_processor_class()(image_processor=None, video_processor=None, **parts)
