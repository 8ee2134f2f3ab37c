"""The ``evaluate:`` section of params.yaml as a frozen dataclass (meaning of each key: docs/stages/evaluate.md)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from evaluation.metrics.embedders import EMBEDDER_NAMES
from evaluation.scoring.best_of import BEST_SEED_RULES
from model.runtime.params_check import reject_unknown_keys

TEXT_AUDIO_NAMES = ("local", "clap")
JUDGE_NAMES = ("tagger", "clap", "alm")


class EvaluateParamsError(ValueError):
    """A key of the ``evaluate:`` section is unknown or has an unusable value."""


@dataclass(frozen=True)
class EvaluateSettings:
    embedder: str = "spectral"  # FAD embedder: spectral (weight-free, offline) | clap
    text_audio: str = "local"  # CLAP-score model: local (trained here) | clap
    judge: str = "tagger"  # CCS judge: tagger (trained here) | clap (zero-shot) | alm (audio-language model)
    clap_path: str = ""  # LAION-CLAP: transformers dir or music_audioset_epoch_15_esc_90.14.pt
    clap_tokenizer_path: str = ""  # roberta-base tokenizer dir, for text with the original .pt
    clap_batch_size: int = 8
    clap_hop_seconds: float = 1.0  # fadtk clap-laion-music: 10 s windows every 1 s
    alm_path: str = ""  # local Qwen2-Audio directory (e.g. Qwen/Qwen2-Audio-7B-Instruct), for judge: alm
    alm_batch_size: int = 4  # (clip, question) pairs per forward pass of the ALM judge
    reference_dir: str = ""  # empty: the test split's instrumental audio
    best_seed_rule: str = "fad_clap"
    ceiling: bool = True  # also score the reference audio round-tripped through the model's codec
    shuffle_seed: int = 0  # derangement for ccs_shuffled
    seed: int = 0  # training seed of the tagger and local-clap
    tagger_steps: int = 600
    local_clap_steps: int = 500
    cache_dir: str = "data/eval_cache"  # reference statistics cache
    out_dir: str = "reports"

    def __post_init__(self) -> None:
        for key, allowed in (
            ("embedder", EMBEDDER_NAMES),
            ("text_audio", TEXT_AUDIO_NAMES),
            ("judge", JUDGE_NAMES),
            ("best_seed_rule", BEST_SEED_RULES),
        ):
            if getattr(self, key) not in allowed:
                raise EvaluateParamsError(
                    f"params.yaml: evaluate.{key} = {getattr(self, key)!r}; "
                    f"expected one of {', '.join(allowed)}"
                )
        for key in ("clap_batch_size", "alm_batch_size", "tagger_steps", "local_clap_steps"):
            if getattr(self, key) < 1:
                raise EvaluateParamsError(f"params.yaml: evaluate.{key} must be >= 1")
        if not 0.0 < self.clap_hop_seconds <= 10.0:
            raise EvaluateParamsError("params.yaml: evaluate.clap_hop_seconds must be in (0, 10]")
        if self.needs_clap and not self.clap_path:
            raise EvaluateParamsError(
                "params.yaml: evaluate.clap_path is empty but evaluate.embedder/text_audio/judge asks for clap; "
                "set it to music_audioset_epoch_15_esc_90.14.pt or a laion/larger_clap_music snapshot directory"
            )
        if self.judge == "alm":
            from evaluation.metrics.alm_judge import AlmWeightsError, check_alm_dir

            try:
                check_alm_dir(self.alm_path)
            except AlmWeightsError as exc:
                raise EvaluateParamsError(str(exc)) from exc

    @property
    def needs_clap(self) -> bool:
        return "clap" in (self.embedder, self.text_audio, self.judge)

    @property
    def needs_descriptors(self) -> bool:
        return self.embedder == "spectral" or self.text_audio == "local" or self.judge == "tagger"

    @classmethod
    def from_params(cls, section: dict[str, Any] | None) -> EvaluateSettings:
        section = section or {}
        known = {f.name: f for f in fields(cls)}
        reject_unknown_keys(section, known, "evaluate", error=EvaluateParamsError)
        values = {}
        for key, value in section.items():
            kind = type(known[key].default)
            if value is None and kind is str:
                value = ""
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if kind is float and not isinstance(value, float):
                raise EvaluateParamsError(f"params.yaml: evaluate.{key} must be a number, got {value!r}")
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise EvaluateParamsError(f"params.yaml: evaluate.{key} must be an integer, got {value!r}")
            if kind is bool and not isinstance(value, bool):
                raise EvaluateParamsError(f"params.yaml: evaluate.{key} must be true or false, got {value!r}")
            if kind is str and not isinstance(value, str):
                raise EvaluateParamsError(f"params.yaml: evaluate.{key} must be a string, got {value!r}")
            values[key] = value
        return cls(**values)
