"""The ``evaluate:`` section of params.yaml as a frozen dataclass, with the checks of its values that the schema
cannot make (names of embedders, judges and rules; a CLAP or ALM path when one is asked for)."""

from __future__ import annotations

from dataclasses import dataclass

from evaluation.metrics.embedders import EMBEDDER_NAMES
from evaluation.scoring.best_of import BEST_SEED_RULES
from model.runtime.errors import InputError

TEXT_AUDIO_NAMES = ("local", "clap")
JUDGE_NAMES = ("tagger", "clap", "alm")


class EvaluateParamsError(InputError, ValueError):
    """A key of the ``evaluate:`` section is unknown or has an unusable value."""


@dataclass(frozen=True)
class EvaluateSettings:
    """The ``evaluate:`` section (meaning of each key: docs/stages/evaluate.md; defaults: the params schema)."""

    embedder: str  # FAD embedder: spectral (weight-free, offline) | clap
    text_audio: str  # CLAP-score model: local (trained here) | clap
    judge: str  # CCS judge: tagger (trained here) | clap (zero-shot) | alm (audio-language model)
    clap_path: str  # LAION-CLAP: transformers dir or music_audioset_epoch_15_esc_90.14.pt
    clap_tokenizer_path: str  # roberta-base tokenizer dir, for text with the original .pt
    clap_batch_size: int
    clap_hop_seconds: float  # fadtk clap-laion-music: 10 s windows every 1 s
    alm_path: str  # local audio-language model directory, for judge: alm
    alm_batch_size: int  # (clip, question) pairs per forward pass of the ALM judge
    reference_dir: str  # empty: the test split's instrumental audio
    best_seed_rule: str
    ceiling: bool  # also score the reference audio round-tripped through the model's codec
    shuffle_seed: int  # derangement for ccs_shuffled
    seed: int  # training seed of the tagger and local-clap
    tagger_steps: int
    local_clap_steps: int
    cache_dir: str  # reference statistics cache
    out_dir: str

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
            from evaluation.metrics.alm_models import AlmWeightsError, check_alm_dir

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
