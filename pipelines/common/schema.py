"""The one schema of params.yaml: a typed pydantic model per section, checked when any stage or tool loads params.

Every key is optional (its default is the embedded value in params.yaml), so partial params files — tests, profiles —
validate too; what the schema refuses is an unknown key (a typo would otherwise be ignored and the default used) or a
value of the wrong type. ``validate_params(tree, source)`` raises ``ParamsError`` listing every problem, each naming
the dotted key and, for an unknown key, the closest valid one.

Value *choices* (``codec.name``, ``generate.method`` ...) are checked by the component that owns them; the schema
checks names, types and simple bounds. Adding a key: add a field to its section's class below (type, default, bound),
add it to params.yaml, and list it in the ``params:`` of every dvc.yaml stage that reads it (see docs/testing.md).
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.common.errors import ParamsError

PositiveInt = Field(ge=1)


class Section(BaseModel):
    """A params.yaml section: unknown keys are an error; YAML's int for a float is fine, a string for a number not."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_blank(cls, data: Any) -> Any:
        """A key written with no value (``clap_path:``) reads as None in YAML; for a text key it means ``""``."""
        if isinstance(data, dict):
            return {k: "" if v is None and isinstance(getattr(cls.model_fields.get(k), "default", None), str)
                    else v for k, v in data.items()}
        return data


class SyntheticSection(Section):
    n_tracks: int = Field(500, ge=1)
    seconds: float = Field(12.0, gt=0)
    seed: int = 0
    audio_format: str = "flac"
    workers: int = Field(2, ge=0)


class JamendoSection(Section):
    audio_root: str = ""
    metadata_tsv: str = ""
    split_dir: str = ""
    subset: str = "autotagging"
    strict: bool = True


class DataSection(Section):
    source: str = "synthetic"
    prepared_dir: str = "data/prepared"
    caption_seed: int = 0
    synthetic: SyntheticSection = SyntheticSection()
    jamendo: JamendoSection = JamendoSection()


class SeparateSection(Section):
    model: str = "none"
    weights_dir: str = ""
    segment: float = Field(7.8, gt=0)
    overlap: float = Field(0.25, ge=0, lt=1)
    shifts: int = Field(0, ge=0)
    block_seconds: float = Field(60.0, gt=0)
    device: str = "auto"
    workers: int = Field(0, ge=0)
    audio_format: str = "flac"
    out_dir: str = "data/instrumental"


class AcestepSection(Section):
    dtype: str = "float32"


class MelSection(Section):
    sample_rate: int = Field(22050, ge=1)
    n_fft: int = Field(2048, ge=1)
    hop: int = Field(1024, ge=1)
    n_mels: int = Field(64, ge=1)
    f_min: float = Field(0.0, ge=0)
    f_max: float = Field(11025.0, gt=0)
    log_floor: float = Field(1.0e-05, gt=0)
    griffin_lim_iters: int = Field(32, ge=0)
    griffin_lim_momentum: float = 0.99
    inversion_iters: int = Field(30, ge=0)
    phase_seed: int = 0


class CodecSection(Section):
    name: str = "mel"
    acestep_dir: str = ""
    device: str = "auto"
    acestep: AcestepSection = AcestepSection()
    mel: MelSection = MelSection()


class EncodeSection(Section):
    clip_seconds: float = Field(10.0, gt=0)
    hop_seconds: float = Field(10.0, gt=0)
    max_clips_per_track: int = Field(1, ge=1)
    min_clip_seconds: float = Field(1.0, ge=0)
    shard_rows: int = Field(128, ge=1)
    batch_size: int = Field(8, ge=1)
    workers: int = Field(2, ge=1)
    out_dir: str = "data/latents/shards"
    stats_path: str = "data/latents/stats.json"


class TextSection(Section):
    encoder: str = "minilm"
    path: str = ""
    max_length: int = Field(64, ge=1)


class ModelSection(Section):
    hidden: int = Field(128, ge=1)
    depth: int = Field(4, ge=1)
    d_state: int = Field(8, ge=1)
    d_conv: int = Field(4, ge=1)
    expand: int = Field(1, ge=1)
    dt_rank: Literal["auto"] | int = "auto"
    heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(2, gt=0)
    time_dim: int = Field(256, ge=2)
    in_kernel: int = Field(3, ge=1)
    scan_backend: str = "auto"


class TrainSection(Section):
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(16, ge=1)
    accum_steps: int = Field(1, ge=1)
    frames: int = Field(64, ge=1)
    lr: float = Field(0.001, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup: int = Field(50, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    ema_decay: float = Field(0.995, ge=0, le=1)
    cond_drop: float = Field(0.1, ge=0, le=1)
    t_mean: float = 0.0
    t_std: float = Field(1.0, gt=0)
    val_every: int = Field(250, ge=1)
    val_batch_size: int = Field(32, ge=1)
    val_clips: int = Field(256, ge=0)
    ckpt_every: int = Field(250, ge=1)
    keep: int = Field(3, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = 0
    workers: int = Field(1, ge=1)
    use_gpu: bool = False
    resume: bool = True
    ckpt_dir: str = "checkpoints"
    out_dir: str = "models/final"


class GenerateSection(Section):
    prompts: str = "builtin"
    n_prompts: int = Field(100, ge=0)
    seconds: float = Field(10.0, gt=0)
    steps: int = Field(25, ge=1)
    cfg_scale: float = 3.5
    method: str = "euler"
    seeds: int = Field(2, ge=1)
    seed: int = 0
    batch_size: int = Field(16, ge=1)
    device: str = "auto"
    out_dir: str = "generated"


class EvaluateSection(Section):
    embedder: str = "spectral"
    text_audio: str = "local"
    judge: str = "tagger"
    clap_path: str = ""
    clap_tokenizer_path: str = ""
    clap_batch_size: int = Field(8, ge=1)
    clap_hop_seconds: float = Field(1.0, gt=0)
    alm_path: str = ""
    alm_batch_size: int = Field(4, ge=1)
    reference_dir: str = ""
    best_seed_rule: str = "fad_clap"
    shuffle_seed: int = 0
    seed: int = 0
    tagger_steps: int = Field(600, ge=1)
    local_clap_steps: int = Field(500, ge=1)
    cache_dir: str = "data/eval_cache"
    out_dir: str = "reports"


class SubmitSection(Section):
    rms_floor: float = Field(1.0e-04, ge=0)
    out_dir: str = "submission"


class RaySection(Section):
    address: str = ""  # "" = a private local instance; "auto" or host:port = connect (RAY_ADDRESS is honoured)
    storage: str = ""  # shared path or pyarrow URI for multi-node outputs; "" = local


class ParamsSchema(Section):
    data: DataSection = DataSection()
    separate: SeparateSection = SeparateSection()
    codec: CodecSection = CodecSection()
    encode: EncodeSection = EncodeSection()
    text: TextSection = TextSection()
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    generate: GenerateSection = GenerateSection()
    evaluate: EvaluateSection = EvaluateSection()
    submit: SubmitSection = SubmitSection()
    ray: RaySection = RaySection()


def _section_class(path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The schema class of the section at ``path`` (None when the path does not lead to a section)."""
    cls: type[BaseModel] = ParamsSchema
    for part in path:
        field = cls.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        cls = annotation
    return cls


def _key_path(loc: tuple[Any, ...]) -> tuple[str, ...]:
    """The params key of an error location (pydantic appends union branches such as ``int`` to it)."""
    path: list[str] = []
    cls: type[BaseModel] | None = ParamsSchema
    for part in loc:
        if cls is None or str(part) not in cls.model_fields:
            break
        path.append(str(part))
        cls = _section_class(tuple(path))
    return tuple(path)


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    dotted = ".".join(str(p) for p in loc)
    if error["type"] != "extra_forbidden":
        dotted = ".".join(_key_path(loc)) or dotted
    if error["type"] == "extra_forbidden":
        cls = _section_class(loc[:-1])
        known = list(cls.model_fields) if cls else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        prefix = ".".join(str(p) for p in loc[:-1])
        hint = f"did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else (
            f"valid keys here: {', '.join(known)}")
        return f"unknown key '{dotted}' ({hint})"
    return f"{dotted} = {error.get('input')!r}: {error['msg']}"


def validate_params(tree: dict[str, Any], source: str = "params.yaml") -> ParamsSchema:
    """Check ``tree`` (a whole or partial params file) against the schema; ``ParamsError`` lists every problem."""
    try:
        return ParamsSchema.model_validate(tree)
    except ValidationError as exc:
        problems = list(dict.fromkeys(_describe(e) for e in exc.errors()))
        raise ParamsError(f"{source}: " + "; ".join(problems)) from None


def section_keys(prefix: str = "") -> list[str]:
    """Every leaf key under ``prefix`` (``""`` = the whole schema), dotted; e.g. ``section_keys("submit")``."""
    cls: type[BaseModel] = ParamsSchema
    parts = [p for p in prefix.split(".") if p]
    for i, part in enumerate(parts):
        sub = _section_class(tuple(parts[: i + 1]))
        if sub is None:
            if part not in cls.model_fields:
                raise KeyError(f"'{prefix}' is not a params key")
            return [prefix]
        cls = sub
    keys: list[str] = []
    for name in cls.model_fields:
        dotted = f"{prefix}.{name}" if prefix else name
        keys += section_keys(dotted) if _section_class(tuple(dotted.split("."))) else [dotted]
    return keys
