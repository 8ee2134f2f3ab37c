"""What a pipeline run produced, in a few lines: ``python -m pipelines.summary`` (the last step of ``make repro``).

Reads params.yaml for the output folders (``train.out_dir``, ``generate.out_dir``, ``evaluate.out_dir``,
``submit.out_dir``) and prints, one line each: the trained model, the generated clips, the headline metrics (with
whether they are the challenge's metrics or offline stand-ins), the submission and the listening report's
``file://`` address. Anything missing is said to be missing; the command never fails on a partial run.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from pipelines.common.params import ParamsSchema, load_params, stage_arg_parser


def _size(path: Path) -> str:
    total = (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )
    return f"{total / 2**20:.1f} MiB"


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _members(package: Path) -> str:
    try:
        with zipfile.ZipFile(package) as zf:
            return str(sum(name.endswith(".wav") for name in zf.namelist()))
    except (OSError, zipfile.BadZipFile):
        return "unreadable:"


def summary_lines(params: ParamsSchema) -> list[str]:
    """The summary, one string per line."""
    model = Path(params.train.out_dir)
    generated = Path(params.generate.out_dir)
    reports = Path(params.evaluate.out_dir)
    submission = Path(params.submit.out_dir)
    lines = ["== flowjam: what this run produced"]

    config = _json(model / "config.json")
    lines.append(
        f"model       {model}/ ({_size(model)})" if config is not None else f"model       {model}/: missing"
    )

    wavs = sorted(generated.rglob("*.wav")) if generated.is_dir() else []
    prompts = {p.parent.name for p in wavs}
    lines.append(
        f"generated   {generated}/: {len(wavs)} clips for {len(prompts)} prompts ({_size(generated)})"
        if wavs
        else f"generated   {generated}/: no clips"
    )

    metrics, details = _json(reports / "metrics.json"), _json(reports / "details.json") or {}
    if metrics and all(k in metrics for k in ("fad", "clap", "ccs")):
        sources = details.get("metric_sources", {})
        kind = (
            (
                "offline stand-ins"
                if not any(s.get("challenge_metric") for s in sources.values())
                else "see the report for which are the challenge's"
            )
            if sources
            else "sources unknown"
        )
        lines.append(
            f"metrics     {reports / 'metrics.json'}: FAD {metrics['fad']:.4g}  CLAP {metrics['clap']:.4f}  "
            f"CCS {metrics['ccs']:.4f} (chosen seed per ranked prompt; {kind})"
        )
    else:
        lines.append(f"metrics     {reports / 'metrics.json'}: missing")

    packages = sorted(submission.glob("*.zip")) if submission.is_dir() else []
    lines.append(
        f"submission  {packages[0]}: {_members(packages[0])} WAV files (+ parameter_count.json, manifest.csv)"
        if len(packages) == 1
        else f"submission  {submission}/: {'missing' if not packages else f'{len(packages)} packages'}"
    )

    page = reports / "index.html"
    lines.append(
        f"report      {page.resolve().as_uri()}  (open in a browser; no server needed)"
        if page.is_file()
        else f"report      {page}: missing"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    args = stage_arg_parser("Say what the pipeline produced and where the listening report is.").parse_args(
        argv
    )
    print("\n".join(summary_lines(load_params(args.params))))


if __name__ == "__main__":
    main()
