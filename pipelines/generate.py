"""Stage `generate`: render every prompt × seed to ``generated/<prompt_id>/seed-<k>.wav`` (44.1 kHz stereo).

    python -m pipelines.generate [--params params.yaml]                 # the stage (params ``generate.*``)
    python -m pipelines.generate "calm piano ballad" -o out.wav [--seconds 10 --steps 25 --cfg 1.5 --seed 0
                                 --method euler --model-dir models/final --device auto]   # one prompt
    python -m pipelines.generate "calm piano ballad" --continue in.wav --seconds 30 -o out.wav   # extend in.wav
    python -m pipelines.generate "calm piano ballad" --inpaint in.wav --region 4.0:6.5 -o out.wav  # redo a span
                                 [--repeats 1 --crossfade 0.25]   (docs/generation.md)

Stage outputs (in ``generate.out_dir``): the WAVs, ``prompts.jsonl`` (the exact prompt set, for evaluate and
submit), ``manifest.parquet`` (prompt_id, seed, path, seconds, sample_rate, noise_seed, caption) and
``resume_key.json``; the run record (device, timings) goes to ``provenance/generate.json``. Resumable: when
``resume_key.json`` matches (same sampler settings, seed, length and model weights), a WAV that is already complete
(44.1 kHz, stereo, exactly ``seconds``) is kept; otherwise the old WAVs are removed first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from evaluation.challenge.prompts import Prompt, resolve_prompts, save_prompts
from model.audio.io import AudioDecodeError, audio_info, write_audio
from model.flow.precision import PRECISIONS
from model.flow.render import Edit, RenderRequest, RequestError, check_request, parse_region, render
from model.flow.sampling import METHODS, SamplerConfig, noise_generator, stable_seed
from model.flow.text_to_music import OUTPUT_CHANNELS, OUTPUT_SAMPLE_RATE, TextToMusic
from model.network.scan_cuda import CudaScanUnavailableError
from model.runtime.atomic_io import write_json_atomic, write_parquet_atomic
from model.runtime.errors import InputError
from pipelines.common.cli import run_main
from pipelines.common.cpu_turn import cpu_turn
from pipelines.common.logs import setup_logging
from pipelines.common.params import ParamsError, ParamsSchema, load_params, stage_arg_parser
from pipelines.common.provenance import write_run_record
from pipelines.common.schema import GenerateSection, validate_params

log = logging.getLogger("pipelines.generate")

MIN_SECONDS = 10.0  # the challenge scores the first 10 s and rejects shorter files
# fixed so that changing the noise seed (generate.seed) never changes which test tracks are prompts
BUILTIN_SELECTION_SEED = 0
RESUME_FILE = "resume_key.json"


def sampler_of(settings: GenerateSection) -> SamplerConfig:
    """The ODE solver settings of ``generate:`` (``method`` must name a solver of model.flow.sampling)."""
    if settings.method not in METHODS:
        raise ParamsError(
            f"params.yaml: generate.method = {settings.method!r}: must be one of {', '.join(METHODS)}"
        )
    if settings.precision not in PRECISIONS:
        raise ParamsError(
            f"params.yaml: generate.precision = {settings.precision!r}: must be one of {', '.join(PRECISIONS)}"
        )
    return SamplerConfig(steps=settings.steps, cfg_scale=settings.cfg_scale, method=settings.method)


def with_overrides(settings: GenerateSection, **overrides: Any) -> GenerateSection:
    """``settings`` with some keys replaced (``None`` keeps a key), validated like the params file."""
    changed = {k: v for k, v in overrides.items() if v is not None}
    return validate_params({"generate": {**settings.model_dump(), **changed}}, "generate options").generate


def wav_path(out_dir: str | Path, prompt_id: str, seed_index: int) -> Path:
    return Path(out_dir) / prompt_id / f"seed-{seed_index}.wav"


def is_complete(path: Path, seconds: float) -> bool:
    """A WAV written by an earlier run that already meets the output format (atomic writes: never partial)."""
    try:
        info = audio_info(path)
    except AudioDecodeError:
        return False
    return (
        info.sample_rate == OUTPUT_SAMPLE_RATE
        and info.channels == OUTPUT_CHANNELS
        and info.frames == round(seconds * OUTPUT_SAMPLE_RATE)
    )


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of a file's bytes (None when absent), read in 1 MiB blocks."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resume_key(settings: GenerateSection, model_dir: str | Path) -> dict[str, Any]:
    """What an existing file must have been made with to be reused: sampler, seeds, length and model identity.

    The model is identified by content (no mtime: the key is a stage output, byte-identical for identical work)."""
    weights = Path(model_dir) / "model.safetensors"
    if not weights.is_file():  # an unmerged LoRA fine-tune (its config.json records the base's sha256)
        weights = Path(model_dir) / "adapter.safetensors"
    config = Path(model_dir) / "config.json"
    return {
        "seconds": settings.seconds,
        "steps": settings.steps,
        "cfg_scale": settings.cfg_scale,
        "method": settings.method,
        "precision": settings.precision,
        "seed": settings.seed,
        "model_config_sha256": file_sha256(config),
        "weights_sha256": file_sha256(weights),
    }


def can_resume(out_dir: Path, key: dict[str, Any]) -> bool:
    """True when ``out_dir`` was filled with the same ``resume_key`` (then its complete files are kept)."""
    path = out_dir / RESUME_FILE
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(key))
    except json.JSONDecodeError:
        return False


def generate_prompt_set(engine: TextToMusic, prompts: list[Prompt], settings: GenerateSection) -> pa.Table:
    """Render every (prompt, seed index) whose file is not yet complete, in batches; the manifest table."""
    jobs = [(p, k) for p in prompts for k in range(settings.seeds)]
    todo = [
        (p, k)
        for p, k in jobs
        if not is_complete(wav_path(settings.out_dir, p.prompt_id, k), settings.seconds)
    ]
    if len(todo) < len(jobs):
        log.info("resuming: %d of %d files already complete", len(jobs) - len(todo), len(jobs))
    batches = [todo[i : i + settings.batch_size] for i in range(0, len(todo), settings.batch_size)]
    for batch in tqdm(batches, desc="generate", unit="batch"):
        gens = [noise_generator(p.prompt_id, k, settings.seed) for p, k in batch]
        audio = engine.generate([p.caption for p, _ in batch], gens, settings.seconds, sampler_of(settings))
        for (p, k), wav in zip(batch, audio, strict=True):
            write_audio(wav_path(settings.out_dir, p.prompt_id, k), wav, OUTPUT_SAMPLE_RATE)
    return pa.table(
        {
            "prompt_id": [p.prompt_id for p, _ in jobs],
            "seed": pa.array([k for _, k in jobs], pa.int32()),
            "path": [str(wav_path(settings.out_dir, p.prompt_id, k)) for p, k in jobs],
            "seconds": pa.array([settings.seconds] * len(jobs), pa.float64()),
            "sample_rate": pa.array([OUTPUT_SAMPLE_RATE] * len(jobs), pa.int32()),
            "noise_seed": pa.array([stable_seed(p.prompt_id, k, settings.seed) for p, k in jobs], pa.int64()),
            "caption": [p.caption for p, _ in jobs],
        }
    )


def run_stage(params: ParamsSchema) -> None:
    settings = params.generate
    sampler_of(settings)  # refuses an unknown method before any work
    model_dir = params.train.out_dir
    tracks = Path(params.data.prepared_dir) / "tracks.parquet"
    prompts = resolve_prompts(settings.prompts, tracks, settings.n_prompts, seed=BUILTIN_SELECTION_SEED)
    log.info(
        "%d prompts × %d seeds, %.1f s each, %s %d steps, CFG %.2f",
        len(prompts),
        settings.seeds,
        settings.seconds,
        settings.method,
        settings.steps,
        settings.cfg_scale,
    )
    engine = load_engine(model_dir, settings)
    out = Path(settings.out_dir)
    key = resume_key(settings, model_dir)
    resume = can_resume(out, key)
    stale = [] if resume else sorted(out.glob("*/seed-*.wav"))
    if stale:  # removed before the new key is written, so a later resume can never keep one of them
        log.warning("%s: %d files from other settings or another model; removing them", out, len(stale))
        for path in stale:
            path.unlink()
    write_json_atomic(out / RESUME_FILE, key)
    save_prompts(out / "prompts.jsonl", prompts)
    with cpu_turn("generate", on_cpu=engine.device.type == "cpu") as turn:
        manifest = generate_prompt_set(engine, prompts, settings)
    write_parquet_atomic(out / "manifest.parquet", manifest)
    write_run_record(
        "generate",
        {"generate": settings.model_dump(), "train.out_dir": model_dir},
        model_dir=model_dir,
        n_prompts=len(prompts),
        n_files=manifest.num_rows,
        codec=engine.codec.settings(),
        text_encoder=engine.text_encoder.name,
        device=str(engine.device),
        precision=settings.precision,
        scan_backend=engine.scan.as_dict() if engine.scan else None,
        cpu_turn=turn.as_dict(),
    )
    log.info("wrote %d files and %s", manifest.num_rows, out / "manifest.parquet")


class ModelMissingError(InputError, FileNotFoundError):
    """No trained model where one is expected; says which directory and what to run first."""


def load_engine(model_dir: str | Path, settings: GenerateSection) -> TextToMusic:
    """The one place an engine is built (stage, command line, studio) from ``generate.*`` settings."""
    if not (Path(model_dir) / "config.json").is_file():
        raise ModelMissingError(
            f"no trained model in {model_dir} (config.json missing); pass --model-dir, set train.out_dir in "
            "the params file, or train one with `dvc repro train` (`make repro` runs the whole pipeline)"
        )
    return TextToMusic.from_dir(model_dir, settings.device, settings.precision)


def request_of(args: Any, base: GenerateSection) -> tuple[RenderRequest, GenerateSection]:
    """The render request of the single-prompt command line; unset options fall back to ``base`` (generate.*).

    With ``--continue`` the output runs to ``--seconds`` in total (default: input + 10 s); with ``--inpaint`` it
    has the input's length and only ``--region`` is regenerated.
    """
    if args.region and not args.inpaint:
        raise RequestError("--region only applies with --inpaint in.wav")
    seconds = base.seconds if args.seconds is None else args.seconds
    if args.continue_from and args.seconds is None:
        try:
            info = audio_info(args.continue_from)
        except AudioDecodeError as exc:
            raise RequestError(f"cannot read --continue {args.continue_from}: {exc.reason}") from None
        seconds = info.frames / info.sample_rate + 10.0
    settings = with_overrides(
        base,
        seconds=max(seconds, MIN_SECONDS) if args.inpaint else seconds,
        steps=args.steps,
        cfg_scale=args.cfg,
        method=args.method,
        device=args.device,
    )
    edit = None
    if args.continue_from or args.inpaint:
        edit = Edit(
            kind="continue" if args.continue_from else "inpaint",
            source=args.continue_from or args.inpaint,
            region=parse_region(args.region) if args.region else None,
            repeats=args.repeats,
            crossfade_s=args.crossfade,
            label="--continue" if args.continue_from else "--inpaint",
        )
    request = RenderRequest(args.prompt, settings.seconds, sampler_of(settings), args.seed, edit)
    check_request(request)
    return request, settings


def run_single(args: Any, params: ParamsSchema) -> Path:
    """One caption → one WAV at ``args.output`` (``model.flow.render``: the same path as the studio's)."""
    started = time.perf_counter()
    request, settings = request_of(args, params.generate)
    engine = load_engine(args.model_dir or params.train.out_dir, settings)
    with tqdm(total=request.sampler.steps, desc="sample", unit="step") as bar:
        wav = render(engine, request, progress=bar.update).audio
    write_audio(args.output, wav, OUTPUT_SAMPLE_RATE)
    took = time.perf_counter() - started
    print(
        f"wrote {Path(args.output).resolve()} ({wav.shape[-1] / OUTPUT_SAMPLE_RATE:.1f} s of audio, "
        f"{OUTPUT_SAMPLE_RATE} Hz stereo, seed {args.seed}) in {took:.1f} s"
    )
    return Path(args.output)


def arg_parser() -> argparse.ArgumentParser:
    """The command line: the stage without a prompt, one prompt (and its edits) with one."""
    parser = stage_arg_parser("Generate audio: the generate stage, or one prompt when a prompt is given.")
    parser.add_argument("prompt", nargs="?", help="a caption: render just this prompt to --output")
    parser.add_argument("-o", "--output", default="out.wav", help="single-prompt mode: the WAV to write")
    parser.add_argument("--seconds", type=float, help="duration (>= 10 s)")
    parser.add_argument("--steps", type=int, help="ODE steps")
    parser.add_argument("--cfg", type=float, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (single-prompt mode)")
    parser.add_argument("--method", choices=METHODS, help="ODE solver")
    parser.add_argument(
        "--model-dir", help="trained model directory (default: train.out_dir or models/final)"
    )
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    edit = parser.add_mutually_exclusive_group()
    edit.add_argument(
        "--continue",
        dest="continue_from",
        metavar="IN_WAV",
        help="keep this audio and continue it to --seconds in total (default: its length + 10 s)",
    )
    edit.add_argument("--inpaint", metavar="IN_WAV", help="regenerate --region of this audio, keep the rest")
    parser.add_argument("--region", help="with --inpaint: START:END in seconds, e.g. 4.0:6.5")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="editing: solver passes per step with re-noising between them (>= 1; smooths seams)",
    )
    parser.add_argument(
        "--crossfade",
        type=float,
        default=0.25,
        help="editing: seconds over which the input fades into the generated span",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = arg_parser().parse_args(argv)
    setup_logging()
    if args.prompt is None:
        run_stage(load_params(args.params))
        return
    run_single(args, load_params(args.params, missing_ok=True))


if __name__ == "__main__":
    run_main("generate", main, extra=(CudaScanUnavailableError,))
