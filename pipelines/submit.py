"""Stage `submit`: copy the best seed of every prompt into ``submission/`` and check it against the challenge rules.

Reads ``<generate.out_dir>/prompts.jsonl`` (the prompt set that was generated) and ``manifest.parquet``,
``<evaluate.out_dir>/best_seeds.json`` and ``metrics.json``; writes ``<submit.out_dir>/`` (see
``evaluation/challenge/submission.py``). Any rule violation fails the stage with the full list and leaves no new submission.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq

from evaluation.challenge.prompts import load_prompts
from evaluation.challenge.submission import SubmissionRules, build_submission, read_best_seeds
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


def run_stage(params: ParamsSchema) -> Path:
    generated_dir = Path(params.generate.out_dir)
    reports_dir = Path(params.evaluate.out_dir)
    out_dir = Path(params.submit.out_dir)
    rules = config_of(SubmissionRules, params.submit)
    prompts = load_prompts(generated_dir / "prompts.jsonl")
    best = read_best_seeds(reports_dir / "best_seeds.json", [p.prompt_id for p in prompts])
    metrics = reports_dir / "metrics.json"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics}: evaluation metrics not found; run the evaluate stage first")
    built = build_submission(prompts, best, generated_files(generated_dir), out_dir, metrics, rules)
    write_run_record(
        "submit",
        {
            "submit": params.submit.model_dump(),
            "generate.out_dir": str(generated_dir),
            "evaluate.out_dir": str(reports_dir),
        },
        n_prompts=len(prompts),
    )
    return built


def main(argv: list[str] | None = None) -> None:
    args = stage_arg_parser("Build and check the challenge submission from the best seeds.").parse_args(argv)
    setup_logging()
    run_stage(load_params(args.params))


if __name__ == "__main__":
    run_main("submit", main)
