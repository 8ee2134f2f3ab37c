"""Stage `submit`: package the best seed of every prompt as ``submission/{team}_{track}_{n}.zip`` and check it.

Reads ``<generate.out_dir>/prompts.jsonl`` (the prompt set that was generated) and ``manifest.parquet``,
``<evaluate.out_dir>/best_seeds.json``, ``metrics.json`` and ``per_prompt.parquet`` (the fingerprint of every
scored packaged clip), and ``<train.out_dir>/model.safetensors`` (the parameter count); writes
``<submit.out_dir>/`` (see ``evaluation/challenge/submission.py``). Any rule violation — or a packaged clip that
is not the one evaluate scored — fails the stage with the full list and leaves no new submission.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq

from evaluation.challenge.parameters import count_parameters, parameter_problems
from evaluation.challenge.prompts import load_prompts
from evaluation.challenge.submission import (
    SubmissionError,
    SubmissionRules,
    build_submission,
    read_best_seeds,
)
from pipelines.common.cli import run_main
from pipelines.common.logs import setup_logging
from pipelines.common.params import ParamsSchema, config_of, load_params, stage_arg_parser
from pipelines.common.provenance import write_run_record

log = logging.getLogger("pipelines.submit")


def generated_files(generated_dir: Path) -> dict[tuple[str, int], str]:
    """(prompt_id, seed index) → WAV path, from the generate stage's manifest."""
    manifest = generated_dir / "manifest.parquet"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: generation manifest not found; run the generate stage first")
    table = pq.read_table(manifest, columns=["prompt_id", "seed", "path"]).to_pylist()
    return {(row["prompt_id"], int(row["seed"])): row["path"] for row in table}


def scored_fingerprints(reports_dir: Path) -> dict[tuple[str, int], str]:
    """(prompt_id, seed index) → sha256 of the packaged clip the evaluate stage scored (per_prompt.parquet)."""
    table_path = reports_dir / "per_prompt.parquet"
    if not table_path.is_file():
        raise FileNotFoundError(f"{table_path}: not found; run the evaluate stage first (dvc repro evaluate)")
    if "package_sha256" not in pq.read_schema(table_path).names:
        raise FileNotFoundError(
            f"{table_path}: has no package_sha256 column (written by an older evaluate); rerun evaluate"
        )
    rows = pq.read_table(table_path, columns=["prompt_id", "seed", "package_sha256"]).to_pylist()
    return {(r["prompt_id"], int(r["seed"])): r["package_sha256"] for r in rows}


def run_stage(params: ParamsSchema) -> Path:
    generated_dir = Path(params.generate.out_dir)
    reports_dir = Path(params.evaluate.out_dir)
    model_dir = Path(params.train.out_dir)
    out_dir = Path(params.submit.out_dir)
    rules = config_of(SubmissionRules, params.submit)
    prompts = load_prompts(generated_dir / "prompts.jsonl")
    best = read_best_seeds(reports_dir / "best_seeds.json", [p.prompt_id for p in prompts])
    metrics = reports_dir / "metrics.json"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics}: evaluation metrics not found; run the evaluate stage first")
    scored = scored_fingerprints(reports_dir)
    count = count_parameters(model_dir)
    too_many = parameter_problems(count, rules.track)
    if too_many:
        raise SubmissionError(f"{model_dir} (submit.track {rules.track})", too_many)
    log.info("%s: %s parameters (%s track)", model_dir, f"{count['parameters']:,}", rules.track)
    built = build_submission(
        prompts, best, generated_files(generated_dir), out_dir, metrics, rules, count, scored_sha256=scored
    )
    write_run_record(
        "submit",
        {
            "submit": params.submit.model_dump(),
            "generate.out_dir": str(generated_dir),
            "evaluate.out_dir": str(reports_dir),
            "train.out_dir": str(model_dir),
        },
        n_prompts=len(prompts),
    )
    return built


def main(argv: list[str] | None = None) -> None:
    args = stage_arg_parser("Package and check the challenge submission from the best seeds.").parse_args(
        argv
    )
    setup_logging()
    run_stage(load_params(args.params))


if __name__ == "__main__":
    run_main("submit", main)
