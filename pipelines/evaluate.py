"""Stage `evaluate`: FAD, CLAP score and CCS of the generated audio, the best seed per prompt, the listening report.

Reads ``<generate.out_dir>/prompts.jsonl`` + ``manifest.parquet`` (the prompt set and clips generate wrote),
the reference audio (the test split's instrumental audio, or ``evaluate.reference_dir``), for the offline
judge and text–audio model the train/validation splits of ``<data.prepared_dir>/tracks.parquet`` with
``<separate.out_dir>/manifest.parquet``, and the train stage's DVCLive loss curves (``dvclive/``, for the report).
With ``evaluate.ceiling`` (default true) the reference audio is also round-tripped through the ``codec:`` the
model was trained with and scored the same way: ``ceiling.*`` in metrics.json. Every generated clip is scored
as the submit stage packages it (``submit.sample_rate``, ``submit.channels``, ``submit.seconds``: exactly 10 s,
16-bit; ``evaluation/challenge/package.py``), and its fingerprint goes to ``per_prompt.parquet`` for submit to
check. The headline scores the ranked prompts, ``ood.*`` the out-of-distribution ones.
Writes in ``evaluate.out_dir``: ``metrics.json`` (numbers only: the DVC metric), ``details.json`` (what produced
them), ``per_prompt.parquet`` (one row per clip), ``best_seeds.json``, ``index.html`` + ``spectrograms/`` (the
listening report), ``models/`` (trained tagger / local-clap) and ``evaluate_rejects.json``; the run record goes
to ``provenance/evaluate.json``. Logic lives in ``evaluation/``.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluation.challenge.package import PackageFormat
from evaluation.report.figures import read_training_curves
from evaluation.report.page import write_report
from evaluation.scoring.evaluator import EvaluationOutputs, run_evaluation
from evaluation.scoring.settings import EvaluateSettings
from model.audio.io import resample, to_channels
from model.codec import build_codec
from model.runtime.atomic_io import write_json_atomic, write_parquet_atomic
from pipelines.common.cli import run_main
from pipelines.common.cpu_turn import cpu_turn
from pipelines.common.logs import setup_logging
from pipelines.common.params import ParamsSchema, config_of, load_params, stage_arg_parser
from pipelines.common.provenance import write_run_record
from pipelines.common.workspace import in_dvc_root

log = logging.getLogger("pipelines.evaluate")

OUTPUT_RATE, OUTPUT_CHANNELS = 44100, 2  # what generate writes
LIVE_DIR = "dvclive"  # where the train stage's DVCLive writes (pipelines/train.py LIVE_DIR)


class CodecRoundTrip:
    """audio (C, N) at sr -> the same audio encoded and decoded by the model's codec (``codec:``), as generate
    delivers it: 44.1 kHz stereo, cropped to the input's duration. ``settings()`` keys the ceiling cache."""

    def __init__(self, codec_params: dict[str, Any]):
        self.codec = build_codec(codec_params)

    def settings(self) -> dict[str, Any]:
        source = Path(inspect.getsourcefile(type(self.codec)) or "")
        # a changed codec implementation must never reuse a cached ceiling
        return {**self.codec.settings(), "code_sha256": hashlib.sha256(source.read_bytes()).hexdigest()}

    def __call__(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
        codec = self.codec
        wav = to_channels(
            resample(np.ascontiguousarray(audio, np.float32), sample_rate, codec.sample_rate), codec.channels
        )
        with torch.no_grad():
            out = codec.decode(codec.encode(torch.from_numpy(wav)[None]))[0].float().cpu().numpy()
        out = to_channels(resample(out[:, : wav.shape[1]], codec.sample_rate, OUTPUT_RATE), OUTPUT_CHANNELS)
        return out[:, : round(audio.shape[1] / sample_rate * OUTPUT_RATE)], OUTPUT_RATE


def run_stage(params: ParamsSchema, live_dir: str = LIVE_DIR) -> EvaluationOutputs:
    # the reference-statistics cache is shared by the experiments of a checkout (queued ones included)
    cache_dir = str(in_dvc_root(params.evaluate.cache_dir))
    settings = config_of(EvaluateSettings, params.evaluate, cache_dir=cache_dir)
    if not settings.needs_clap:
        torch.set_num_threads(1)  # offline path: small matrices, extra threads only contend on shared cores
    generated_dir = params.generate.out_dir
    tracks = str(Path(params.data.prepared_dir) / "tracks.parquet")
    instrumental = str(Path(params.separate.out_dir) / "manifest.parquet")
    codec = params.codec.model_dump()  # the ceiling's codec: the one the model was trained with
    roundtrip = CodecRoundTrip(codec) if settings.ceiling else None
    package = config_of(PackageFormat, params.submit)  # score what the submit stage will send
    # scoring and the report in the checkout's CPU turn: beside another experiment's generate they would stall its
    # OpenMP threads (pipelines.common.cpu_turn)
    with cpu_turn("evaluate", on_cpu=not torch.cuda.is_available()) as turn:
        outputs = run_evaluation(settings, generated_dir, tracks, instrumental, roundtrip, package)
        out = Path(settings.out_dir)
        write_parquet_atomic(out / "per_prompt.parquet", outputs.per_prompt)
        write_json_atomic(out / "best_seeds.json", outputs.best_seeds)
        write_json_atomic(out / "evaluate_rejects.json", outputs.rejects)
        write_json_atomic(out / "details.json", outputs.details)
        write_json_atomic(out / "metrics.json", outputs.metrics)
        used = {
            "evaluate": params.evaluate.model_dump(),
            "generate.out_dir": generated_dir,
            "tracks": tracks,
            "instrumental_manifest": instrumental,
            "codec": codec,
        }
        started = time.perf_counter()
        page = write_report(
            out,
            outputs.metrics,
            outputs.details,
            outputs.per_prompt,
            read_training_curves(live_dir),
            roundtrip=roundtrip,
        )  # the showcase's references through the codec (evaluate.ceiling)
    write_run_record(
        "evaluate",
        used,
        embedder=outputs.details["embedder"],
        text_audio_model=outputs.details["text_audio_model"],
        judge=outputs.details["judge"],
        cpu_turn=turn.as_dict(),
        report_seconds=round(time.perf_counter() - started, 2),
        **outputs.run_facts,
    )
    log.info(
        "wrote %s, %s, %s and %s; listening report %s (%.1f s)",
        out / "metrics.json",
        out / "details.json",
        out / "per_prompt.parquet",
        out / "best_seeds.json",
        page,
        time.perf_counter() - started,
    )
    return outputs


def main(argv: list[str] | None = None) -> None:
    args = stage_arg_parser(
        "Score generated audio (FAD, CLAP score, CCS), pick the best seed per prompt and "
        "write the listening report."
    ).parse_args(argv)
    setup_logging()
    run_stage(load_params(args.params))


if __name__ == "__main__":
    run_main("evaluate", main)
