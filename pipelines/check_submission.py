"""Check a submission against the challenge rules (the check the submit stage runs, on its own).

    python -m pipelines.check_submission submission/ [--prompts generated/prompts.jsonl] [--params params.yaml]
    python -m pipelines.check_submission submission/flowjam_efficiency_1.zip   # one package, by itself

A directory is checked whole (its one ``{team}_{track}_{n}.zip``, the parameter count against that track, the
manifest); a zip alone is checked by its name and every member. The audio format (``submit.sample_rate``, ``channels``,
``seconds``) and ``rms_floor`` come from the params file (the schema's defaults when it is absent). Exits 0 when
the submission is valid, 1 listing every violation (each naming the member), 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from evaluation.challenge.package import ZIP_NAME
from evaluation.challenge.parameters import TRACK_LIMITS
from evaluation.challenge.prompts import resolve_prompts
from evaluation.challenge.submission import (
    SubmissionRules,
    parameter_file_problems,
    validate_package_file,
    validate_submission,
)
from pipelines.common.cli import run_main
from pipelines.common.params import config_of, load_params
from pipelines.common.schema import ParamsSchema

log = logging.getLogger("pipelines.check_submission")


def named_by_the_package(directory: Path, rules: SubmissionRules) -> SubmissionRules:
    """``rules`` with team, track and attempt of the directory's one package (when its name parses)."""
    packages = sorted(directory.glob("*.zip")) if directory.is_dir() else []
    match = ZIP_NAME.match(packages[0].name) if len(packages) == 1 else None
    if match is None or match["track"] not in TRACK_LIMITS:
        return rules
    return replace(rules, team=match["team"], track=match["track"], attempt=int(match["attempt"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.check_submission", description=__doc__.split("\n")[0]
    )
    parser.add_argument("path", help="a submission directory or one {team}_{track}_{n}.zip")
    parser.add_argument(
        "--prompts",
        default="generated/prompts.jsonl",
        help="prompt file, or 'builtin' (default: generated/prompts.jsonl)",
    )
    parser.add_argument("--tracks", default="data/prepared/tracks.parquet", help="tracks table for 'builtin'")
    parser.add_argument("--n-prompts", type=int, default=100, help="prompt count for 'builtin' (0 = all)")
    parser.add_argument(
        "--params", default="params.yaml", help="params file for submit.* (default: params.yaml)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    params = load_params(args.params) if Path(args.params).is_file() else ParamsSchema()
    rules = config_of(SubmissionRules, params.submit)
    prompts = resolve_prompts(args.prompts, args.tracks, args.n_prompts if args.prompts == "builtin" else 0)
    ids = [p.prompt_id for p in prompts]
    path = Path(args.path)
    if path.suffix == ".zip":
        problems = validate_package_file(path, ids, rules.format, rules.rms_floor)
        beside = path.parent / "parameter_count.json"
        match = ZIP_NAME.match(path.name)
        if beside.is_file() and match is not None:
            problems += parameter_file_problems(beside, match["track"])
    else:
        problems = validate_submission(path, ids, named_by_the_package(path, rules))
    for problem in problems:
        log.error("%s", problem)
    if problems:
        log.error("%s: INVALID, %d violation(s)", path, len(problems))
        return 1
    log.info("%s: valid (%d prompts)", path, len(prompts))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main("check_submission", main))
