"""The one schema of params.yaml: a typed pydantic model per section, checked when any stage or tool loads params.

Every key is optional (its default is the embedded value in params.yaml), so partial params files — tests, profiles —
validate too; what the schema refuses is an unknown key (a typo would otherwise be ignored and the default used) or a
value of the wrong type. ``validate_params(tree, source)`` raises ``ParamsError`` listing every problem, each naming
the dotted key and, for an unknown key, the closest valid one. Types are strict, except what PyYAML and the
stages already accept: an int for a float, a numeric string (``1e-3``, which PyYAML does not read as a number) for
a number, an integral float or string (``3e5``) for an integer, ``"true"``/``"false"`` for a flag.

Value *choices* (``codec.name``, ``generate.method`` ...) are checked by the component that owns them; the schema
checks names, types and simple bounds. Adding a key: add a field to its section's class below (type, default, bound),
add it to params.yaml, and list it in the ``params:`` of every dvc.yaml stage that reads it (see docs/testing.md).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from pipelines.common.errors import ParamsError


def _yaml_real(value: Any) -> Any:
    """PyYAML reads ``1e-3`` (no dot) as a string; accept a numeric string for a number, as the stages do."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _yaml_int(value: Any) -> Any:
    """``3e5`` (a string to PyYAML) or ``300000.0`` for an integer; 2.5 stays an error."""
    number = _yaml_real(value)
    if isinstance(number, float) and number.is_integer():
        return int(number)
    return value


def _yaml_bool(value: Any) -> Any:
    return value.lower() == "true" if isinstance(value, str) and value.lower() in ("true", "false") else value


Real = Annotated[float, BeforeValidator(_yaml_real)]
Integer = Annotated[int, BeforeValidator(_yaml_int)]
Flag = Annotated[bool, BeforeValidator(_yaml_bool)]


# the default LoRA targets: the mixer projections that run as modules, cross-attention and the blocks' MLPs
LORA_TARGETS = (
    "blocks.*.mixer.mamba_*.in_proj",
    "blocks.*.mixer.mamba_*.x_proj",
    "blocks.*.mixer.mamba_*.out_proj",
    "blocks.*.mixer.out_proj",
    "blocks.*.cross_attn.to_*",
    "blocks.*.mlp.0",
    "blocks.*.mlp.2",
)


class Section(BaseModel):
    """A params.yaml section: unknown keys are an error; YAML's int for a float is fine, a string for a number not."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_blank(cls, data: Any) -> Any:
        """A key written with no value (``clap_path:``) reads as None in YAML; for a text key it means ``""``."""
        if isinstance(data, dict):
            return {
                k: ""
                if v is None and isinstance(getattr(cls.model_fields.get(k), "default", None), str)
                else v
                for k, v in data.items()
            }
        return data


class SyntheticSection(Section):
    n_tracks: Integer = Field(500, ge=1)
    seconds: Real = Field(12.0, ge=1, le=600)
    seed: Integer = 0
    audio_format: str = "flac"
    workers: Integer = Field(2, ge=1)
    exclude_genres: list[str] = Field(
        default_factory=list, description="genres left out of the built-in set (a held-out genre)"
    )


class JamendoSection(Section):
    audio_root: str = ""
    metadata_tsv: str = ""
    split_dir: str = ""
    subset: str = "autotagging"
    strict: Flag = True


class FolderSection(Section):
    root: str = "music"  # a folder of your audio; also the prepare stage's dvc.yaml dependency
    captions: str = (
        ""  # a CSV/JSONL file inside root; "" = captions.csv/.jsonl there if present, else sidecar .txt
    )
    caption_from_tags: Flag = False
    validation_share: Real = Field(0.1, ge=0, lt=1, description="share of files in the validation split")
    test_share: Real = Field(0.1, ge=0, lt=1, description="share of files in the test split")
    min_seconds: Real = Field(1.0, ge=0, description="shorter files are rejected")
    silence_dbfs: Real = Field(-60.0, le=0, description="files whose RMS level is below it are rejected")


class DataSection(Section):
    source: str = "synthetic"
    prepared_dir: str = "data/prepared"
    caption_seed: Integer = 0
    synthetic: SyntheticSection = SyntheticSection()
    jamendo: JamendoSection = JamendoSection()
    folder: FolderSection = FolderSection()


class SeparateSection(Section):
    model: str = "none"
    weights_dir: str = ""
    segment: Real = Field(7.8, gt=0)
    overlap: Real = Field(0.25, ge=0, lt=1)
    shifts: Integer = Field(0, ge=0)
    block_seconds: Real = Field(60.0, gt=0)
    device: str = "auto"
    workers: Integer = Field(0, ge=0)
    audio_format: str = "flac"
    out_dir: str = "data/instrumental"


class AcestepSection(Section):
    dtype: str = "float32"


class MelSection(Section):
    sample_rate: Integer = Field(22050, ge=1)
    n_fft: Integer = Field(2048, ge=1)
    hop: Integer = Field(1024, ge=1)
    n_mels: Integer = Field(64, ge=1)
    f_min: Real = Field(0.0, ge=0)
    f_max: Real = Field(11025.0, gt=0)
    log_floor: Real = Field(1.0e-05, gt=0)
    griffin_lim_iters: Integer = Field(32, ge=0)
    griffin_lim_momentum: Real = 0.99
    inversion_iters: Integer = Field(30, ge=0)
    phase_seed: Integer = 0


class CodecSection(Section):
    name: str = "mel"
    acestep_dir: str = ""
    device: str = "auto"
    acestep: AcestepSection = AcestepSection()
    mel: MelSection = MelSection()


class EncodeSection(Section):
    clip_seconds: Real = Field(10.0, gt=0)
    hop_seconds: Real = Field(10.0, gt=0)
    max_clips_per_track: Integer = Field(1, ge=0, description="0 = no limit")
    min_clip_seconds: Real = Field(1.0, ge=0)
    shard_rows: Integer = Field(128, ge=1)
    batch_size: Integer = Field(8, ge=1)
    workers: Integer = Field(2, ge=1)
    out_dir: str = "data/latents/shards"
    stats_path: str = "data/latents/stats.json"


class TextSection(Section):
    encoder: str = "minilm"
    path: str = ""
    max_length: Integer = Field(64, ge=1)


class ModelSection(Section):
    hidden: Integer = Field(128, ge=1)
    depth: Integer = Field(4, ge=1)
    d_state: Integer = Field(8, ge=1)
    d_conv: Integer = Field(4, ge=1)
    expand: Integer = Field(1, ge=1)
    dt_rank: Literal["auto"] | Integer = "auto"
    heads: Integer = Field(4, ge=1)
    mlp_ratio: Real = Field(2, gt=0)
    time_dim: Integer = Field(256, ge=2)
    in_kernel: Integer = Field(3, ge=1)
    scan_backend: str = "auto"
    precondition: bool = False


class LoraSection(Section):
    rank: Integer = Field(0, ge=0, description="0 = no LoRA (every weight is trained)")
    alpha: Real = Field(16.0, gt=0)
    dropout: Real = Field(0.0, ge=0, lt=1)
    targets: list[str] = Field(
        default_factory=lambda: list(LORA_TARGETS), description="module path patterns (fnmatch) to adapt"
    )
    merge: Flag = True


class ReplaySection(Section):
    store: str = ""  # a packed store (the base's pack.out_dir) whose train split is mixed in; "" = none
    share: Real = Field(0.0, ge=0, lt=1, description="share of each batch drawn from train.replay.store")


class TrainSection(Section):
    steps: Integer = Field(8000, ge=1)
    batch_size: Integer = Field(8, ge=1)
    accum_steps: Integer = Field(1, ge=1)
    frames: Integer = Field(64, ge=1)
    lr: Real = Field(0.002, gt=0)
    min_lr_ratio: Real = Field(
        0.1, ge=0, le=1, description="the cosine schedule's floor, a share of train.lr"
    )
    weight_decay: Real = Field(0.01, ge=0)
    warmup: Integer = Field(50, ge=0)
    grad_clip: Real = Field(1.0, ge=0)
    ema_decay: Real = Field(0.995, ge=0, le=1)
    cond_drop: Real = Field(
        0.1, ge=0, lt=1, description="share of examples trained with the null text, for CFG"
    )
    t_mean: Real = 0.0
    t_std: Real = Field(1.0, gt=0)
    val_every: Integer = Field(250, ge=1)
    val_batch_size: Integer = Field(32, ge=1)
    val_clips: Integer = Field(256, ge=0)
    ckpt_every: Integer = Field(250, ge=1)
    keep: Integer = Field(3, ge=1)
    log_every: Integer = Field(10, ge=1)
    seed: Integer = 0
    workers: Integer = Field(1, ge=1)
    use_gpu: Flag = False
    resume: Flag = True
    ckpt_dir: str = "checkpoints"
    out_dir: str = "models/final"
    init_from: str = ""  # a trained model directory to start from ("" = random initialisation)
    init_strict: Flag = True
    init_stats: str = "base"  # base | data: whose latent statistics standardise the data
    lora: LoraSection = LoraSection()
    replay: ReplaySection = ReplaySection()


class GenerateSection(Section):
    prompts: str = "builtin"
    n_prompts: Integer = Field(100, ge=0, description="0 = every prompt")
    seconds: Real = Field(
        10.0, ge=10.0, description="the challenge scores the first 10 s and refuses shorter clips"
    )
    steps: Integer = Field(16, ge=1)
    cfg_scale: Real = Field(1.5, allow_inf_nan=False)
    method: str = "euler"
    seeds: Integer = Field(2, ge=1)
    seed: Integer = 0
    batch_size: Integer = Field(16, ge=1)
    device: str = "auto"
    precision: str = "fp32"  # fp32 (TF32 matmuls on CUDA) or bf16 autocast: model.flow.precision
    out_dir: str = "generated"


class EvaluateSection(Section):
    embedder: str = "spectral"
    text_audio: str = "local"
    judge: str = "tagger"
    clap_path: str = ""
    clap_tokenizer_path: str = ""
    clap_batch_size: Integer = Field(8, ge=1)
    clap_hop_seconds: Real = Field(1.0, gt=0)
    alm_path: str = ""
    alm_batch_size: Integer = Field(4, ge=1)
    reference_dir: str = ""
    best_seed_rule: str = "fad_clap"
    ceiling: Flag = True  # also score the reference audio round-tripped through the model's codec
    shuffle_seed: Integer = 0
    seed: Integer = 0
    tagger_steps: Integer = Field(600, ge=1)
    local_clap_steps: Integer = Field(500, ge=1)
    cache_dir: str = "data/eval_cache"
    out_dir: str = "reports"


class SubmitSection(Section):
    team: str = "flowjam"  # names the zip {team}_{track}_{attempt}.zip: letters, digits and '-'
    track: str = "efficiency"  # efficiency (<= 500M parameters) or performance
    attempt: Integer = Field(1, ge=1, description="the n of {team}_{track}_{n}.zip")
    sample_rate: Integer = Field(44100, ge=8000, description="Hz of the packaged WAVs")
    channels: Integer = Field(2, ge=1, le=2, description="channels of the packaged WAVs")
    seconds: Real = Field(10.0, gt=0, description="exact length of every packaged WAV")
    rms_floor: Real = Field(1.0e-04, ge=0)
    out_dir: str = "submission"


class PackSection(Section):
    out_dir: str = "data/latents/store"  # the packed, frame-major latent store that training reads


class RaySection(Section):
    address: str = (
        ""  # "" = a private local instance; "auto" or host:port = connect (RAY_ADDRESS is honoured)
    )
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
    pack: PackSection = PackSection()
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


def _field_description(loc: tuple[Any, ...]) -> str | None:
    """The ``description`` of the field at ``loc`` (what the value is for, said after a bound error)."""
    path = _key_path(loc)
    cls = _section_class(path[:-1]) if path else None
    field = cls.model_fields.get(path[-1]) if cls is not None else None
    return getattr(field, "description", None)


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
        hint = (
            f"did you mean '{prefix + '.' if prefix else ''}{close[0]}'?"
            if close
            else (f"valid keys here: {', '.join(known)}")
        )
        return f"unknown key '{dotted}' ({hint})"
    why = _field_description(loc)
    return f"{dotted} = {error.get('input')!r}: {error['msg']}" + (f" ({why})" if why else "")


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
