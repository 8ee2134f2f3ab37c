"""Check a submission directory against the challenge rules (the check the submit stage runs, on its own).

    python -m pipelines.check_submission submission/ [--prompts generated/prompts.jsonl]

Exits 0 when the submission is valid, 1 listing every violation, 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import logging

from evaluation.challenge.prompts import resolve_prompts
from evaluation.challenge.submission import SubmissionRules, validate_submission
from pipelines.common.cli import run_main
from pipelines.common.schema import ParamsSchema

log = logging.getLogger("pipelines.check_submission")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.check_submission", description=__doc__.split("\n")[0]
    )
    parser.add_argument("directory")
    parser.add_argument(
        "--prompts",
        default="generated/prompts.jsonl",
        help="prompt file, or 'builtin' (default: generated/prompts.jsonl)",
    )
    parser.add_argument("--tracks", default="data/prepared/tracks.parquet", help="tracks table for 'builtin'")
    parser.add_argument("--n-prompts", type=int, default=100, help="prompt count for 'builtin' (0 = all)")
    parser.add_argument("--rms-floor", type=float, default=ParamsSchema().submit.rms_floor)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    prompts = resolve_prompts(args.prompts, args.tracks, args.n_prompts if args.prompts == "builtin" else 0)
    problems = validate_submission(
        args.directory, [p.prompt_id for p in prompts], SubmissionRules(rms_floor=args.rms_floor)
    )
    for problem in problems:
        log.error("%s", problem)
    if problems:
        log.error("%s: INVALID, %d violation(s)", args.directory, len(problems))
        return 1
    log.info("%s: valid (%d prompts)", args.directory, len(prompts))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main("check_submission", main))
