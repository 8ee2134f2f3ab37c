"""The tables of bench/finetune_study.py: each cell the mean over seeds, every seed's value and their range ("noise");
the rise of each fine-tune over the base on the held-out genre's prompts against that noise."""

from __future__ import annotations

from typing import Any

import numpy as np


def cell(values: list[float], digits: int = 3) -> str:
    """mean (each seed's value; noise = their range)."""
    each = " / ".join(f"{v:.{digits}f}" for v in values)
    noise = f"; noise {max(values) - min(values):.{digits}f}" if len(values) > 1 else ""
    return f"{np.mean(values):.{digits}f} ({each}{noise})"


def print_table(summary: dict[str, Any]) -> None:
    genre, results = summary["genre"], summary["results"]
    print(
        f"| model | {genre} CLAP | {genre} CCS | {genre} genre heard | others CLAP | others CCS | FAD (ranked) |"
    )
    print("|---" * 7 + "|")
    for label, seeds in results.items():
        cells = [
            cell([r[part][metric] for r in seeds.values()])
            for part, metric in (
                ("held_out", "clap"), ("held_out", "ccs"), ("held_out", "genre_heard"),
                ("others", "clap"), ("others", "ccs"),
            )
        ]  # fmt: skip
        cells.append(cell([r["fad_all"] for r in seeds.values()], 1))
        print(f"| {label} | " + " | ".join(cells) + " |")
    tables = [("100 prompts x 2 clips", results)]
    if summary.get("focus"):
        focus = summary["focus"]
        print(f"\n{genre} prompts only, {summary['focus_clips']} clips each:")
        print(f"| model | {genre} CLAP | {genre} CCS | {genre} genre heard |\n|---|---|---|---|")
        for label, seeds in focus.items():
            cells = [cell([r["held_out"][m] for r in seeds.values()]) for m in ("clap", "ccs", "genre_heard")]
            print(f"| {label} | " + " | ".join(cells) + " |")
        tables.append((f"{genre} prompts x {summary['focus_clips']} clips", focus))
    for title, table in tables:  # the rise over the base against the seed noise (range over seeds)
        print(f"\nrise over the base, {title}:")
        for metric in ("clap", "ccs"):
            base = [r["held_out"][metric] for r in table["base"].values()]
            for label, seeds in table.items():
                if label == "base":
                    continue
                tuned = [r["held_out"][metric] for r in seeds.values()]
                print(
                    f"  {metric} {label}: +{np.mean(tuned) - np.mean(base):.3f}; noise base "
                    f"{max(base) - min(base):.3f}, {label} {max(tuned) - min(tuned):.3f}; every seed above "
                    f"every base seed: {min(tuned) > max(base)}"
                )
