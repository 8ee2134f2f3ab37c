"""Rank the workspace and every experiment as the challenge ranks entries: a Borda count over FAD, CLAP and CCS.

    python -m pipelines.rank                      # workspace, HEAD and its experiments (`dvc exp show --json`)
    python -m pipelines.rank -- --all-commits     # anything after -- goes to `dvc exp show`
    python -m pipelines.rank --exp-show saved.json

Prints a table that fits 100 columns and writes ``reports/ranking.json`` (``--out``). The rule, ties and missing
metrics: ``evaluation/challenge/ranking.py`` and docs/evaluation.md. Metrics are read from each experiment's
``<evaluate.out_dir>/metrics.json`` (``--metrics-file``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluation.challenge.ranking import Experiment, borda_ranking, format_table
from model.runtime.atomic_io import write_json_atomic
from model.runtime.errors import InputError
from pipelines.common.cli import run_main
from pipelines.common.logs import setup_logging
from pipelines.common.params import load_params

log = logging.getLogger("pipelines.rank")


class ExperimentsError(InputError, RuntimeError):
    """`dvc exp show` could not be run or read."""


def exp_show(extra: Sequence[str], cwd: str | Path = ".") -> list[dict[str, Any]]:
    """The output of ``dvc exp show --json`` (workspace first) in ``cwd``."""
    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    try:
        run = subprocess.run(
            [dvc, "exp", "show", "--json", *extra], cwd=cwd, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise ExperimentsError(f"cannot run dvc ({exc}); run `make env` or put dvc on PATH") from exc
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExperimentsError(f"`dvc exp show --json` failed in {cwd}: {last}")
    return json.loads(run.stdout or "[]")


def experiments_from_exp_show(rows: list[dict[str, Any]], metrics_file: str) -> list[Experiment]:
    """Every entry of ``dvc exp show --json`` (the workspace, each commit, each experiment's latest rev) with the
    values of ``metrics_file``; entries with an error or without that file have no values (unranked)."""
    found: list[Experiment] = []

    def add(rev: dict[str, Any], name: str | None) -> None:
        sha = "" if rev.get("rev") == "workspace" else str(rev.get("rev", ""))
        label = name or ("workspace" if not sha else sha[:7])
        if any(e.name == label for e in found):
            label = f"{label}@{sha[:7] or 'workspace'}"
        data = rev.get("data") or {}
        metrics = ((data.get("metrics") or {}).get(metrics_file) or {}).get("data") or {}
        found.append(Experiment(label, sha, dict(metrics) if not rev.get("error") else {}))

    for row in rows:
        add(row, row.get("name"))
        for exp in row.get("experiments") or []:
            revs = exp.get("revs") or []
            if revs:  # the first rev is the experiment's result (older DVC listed its checkpoints after it)
                add(revs[0], exp.get("name") or revs[0].get("name"))
    return found


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m pipelines.rank", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file for evaluate.out_dir")
    parser.add_argument(
        "--metrics-file", help="metrics file to rank by (default: <evaluate.out_dir>/metrics.json)"
    )
    parser.add_argument(
        "--exp-show", help="read this saved `dvc exp show --json` output instead of running dvc"
    )
    parser.add_argument("--out", default="reports/ranking.json", help="where to write the ranking (JSON)")
    args = parser.parse_args(own)
    setup_logging()
    if args.metrics_file is None:
        out_dir = load_params(args.params).evaluate.out_dir if Path(args.params).is_file() else "reports"
        args.metrics_file = f"{Path(out_dir).as_posix()}/metrics.json"
    if args.exp_show:
        try:
            rows = json.loads(Path(args.exp_show).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ExperimentsError(f"--exp-show {args.exp_show}: not a readable JSON file ({exc})") from exc
    else:
        rows = exp_show(extra)
    ranking = borda_ranking(experiments_from_exp_show(rows, args.metrics_file))
    print(format_table(ranking))
    write_json_atomic(args.out, ranking.to_json())
    log.info("%d ranked, %d unranked; wrote %s", len(ranking.ranked), len(ranking.unranked), args.out)


if __name__ == "__main__":
    run_main("rank", main)
