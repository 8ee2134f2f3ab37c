"""Does best-of-N beat the first seed on scores it did not use? The held-out study of an evaluate run as a table.

python -m pipelines.best_of_study reports/per_prompt.parquet
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pyarrow.parquet as pq

from evaluation.scoring.best_of import held_out_study
from pipelines.common.cli import run_main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.best_of_study", description=__doc__.split("\n")[0]
    )
    parser.add_argument("per_prompt", help="reports/per_prompt.parquet of an evaluate run")
    args = parser.parse_args(argv)
    rows = held_out_study(pq.read_table(args.per_prompt))
    print("| rule | judged on | chosen | first seed | gain | oracle | better / worse / same prompts |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['rule']} | {r['judged_on']} | {r['chosen']:.4f} | {r['first_seed']:.4f} | {r['gain']:+.4f} | "
            f"{r['oracle']:.4f} | {r['better']} / {r['worse']} / {r['same']} |"
        )


if __name__ == "__main__":
    run_main("best_of_study", main)
