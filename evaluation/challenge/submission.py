"""The challenge submission: build ``submission/`` from the best seed per prompt, and check it against the rules.

Layout: ``<prompt_id>.wav`` per prompt (the best seed of ``reports/best_seeds.json``), ``manifest.csv`` (prompt_id,
file, seed, seconds, sample_rate, caption), ``metrics.json`` (a copy of the evaluation metrics) and
``provenance.json``. Rules checked (``validate_submission``): every expected prompt id has exactly one WAV and
there is no other audio or unknown file; each file is a RIFF WAV at 44.1 kHz, at least 10 s long, all samples
finite, and not silent (RMS of the scored first 10 s above ``rms_floor``); the manifest lists exactly the files.

    python -m pipelines.check_submission submission/ --prompts generated/prompts.jsonl
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from evaluation.challenge.prompts import Prompt
from model.runtime.atomic_io import atomic_dir, atomic_path, write_json_atomic
from model.runtime.errors import InputError

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("prompt_id", "file", "seed", "seconds", "sample_rate", "caption")
KNOWN_FILES = ("manifest.csv", "metrics.json", "provenance.json")


@dataclass(frozen=True)
class SubmissionRules:
    """The challenge's audio rules; only ``rms_floor`` (our silence threshold, ``submit.rms_floor``) is a choice."""

    rms_floor: float
    sample_rate: int = 44100  # the challenge's, not params
    min_seconds: float = 10.0
    scored_seconds: float = 10.0


class SubmissionError(InputError, RuntimeError):
    """The submission breaks the rules; ``violations`` lists every problem, one line each."""

    def __init__(self, where: str, violations: Sequence[str]):
        self.violations = list(violations)
        lines = "\n  - ".join(self.violations)
        super().__init__(f"{where}: {len(self.violations)} rule violation(s):\n  - {lines}")


def read_best_seeds(path: str | os.PathLike, prompt_ids: Sequence[str]) -> dict[str, int]:
    """``{"<prompt_id>": <seed index>, ...}`` (optionally under a ``"seeds"`` key, or values ``{"seed": k}``).

    Keys that are not prompt ids (metadata the evaluator adds) are ignored; a prompt without a seed, or with a
    seed that is not a non-negative integer, raises SubmissionError listing them all.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"{p}: best-seed table not found; run the evaluate stage first (dvc repro evaluate)"
        )
    data = json.loads(p.read_text())
    if isinstance(data, Mapping):
        for key in ("seeds", "best_seeds"):
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping):
        raise SubmissionError(str(p), ["expected a JSON object {prompt_id: seed index}"])
    seeds, problems = {}, []
    for pid in prompt_ids:
        value = data.get(pid)
        if isinstance(value, Mapping):
            value = value.get("seed")
        if value is None:
            problems.append(f"prompt {pid}: no best seed")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"prompt {pid}: best seed {value!r} is not a seed index (integer >= 0)")
        else:
            seeds[pid] = value
    if problems:
        raise SubmissionError(str(p), problems)
    return seeds


def build_submission(
    prompts: Sequence[Prompt],
    best_seeds: Mapping[str, int],
    generated: Mapping[tuple[str, int], str | os.PathLike],
    out_dir: str | os.PathLike,
    metrics_path: str | os.PathLike | None,
    rules: SubmissionRules,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Assemble, validate and only then publish ``out_dir`` (a failed build leaves any old one untouched).

    ``generated`` maps (prompt_id, seed index) to the generated WAV. Raises SubmissionError on any violation.
    """
    out = Path(out_dir)
    with atomic_dir(out) as staging:
        missing = [
            f"prompt {p.prompt_id}: no generated file for seed {best_seeds.get(p.prompt_id)}"
            for p in prompts
            if (p.prompt_id, best_seeds.get(p.prompt_id)) not in generated
        ]
        if missing:
            raise SubmissionError(str(out), missing)
        rows = []
        for p in prompts:
            seed = best_seeds[p.prompt_id]
            target = staging / f"{p.prompt_id}.wav"
            shutil.copyfile(generated[(p.prompt_id, seed)], target)
            info = sf.info(str(target))
            rows.append(
                {
                    "prompt_id": p.prompt_id,
                    "file": target.name,
                    "seed": seed,
                    "seconds": round(info.frames / info.samplerate, 6),
                    "sample_rate": info.samplerate,
                    "caption": p.caption,
                }
            )
        write_manifest(staging / "manifest.csv", rows)
        if metrics_path is not None:
            shutil.copyfile(metrics_path, staging / "metrics.json")
        if provenance is not None:
            write_json_atomic(staging / "provenance.json", dict(provenance))
        check_submission(staging, [p.prompt_id for p in prompts], rules, where=str(out))
    log.info("submission %s: %d files, all rules met", out, len(prompts))
    return out


def write_manifest(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def check_audio_file(path: Path, rules: SubmissionRules) -> list[str]:
    """The rule violations of one submission audio file (empty when it is fine)."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises several types for bad headers
        return [f"{path.name}: not a readable audio file ({exc})"]
    problems = []
    if info.format not in ("WAV", "WAVEX"):
        problems.append(f"{path.name}: format {info.format}, expected WAV")
    if info.samplerate != rules.sample_rate:
        problems.append(f"{path.name}: sample rate {info.samplerate} Hz, expected {rules.sample_rate} Hz")
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    if seconds < rules.min_seconds:
        problems.append(f"{path.name}: {seconds:.3f} s long, shorter than the required {rules.min_seconds} s")
    if info.frames == 0:
        return problems
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if not np.isfinite(audio).all():
        problems.append(f"{path.name}: {int((~np.isfinite(audio)).sum())} non-finite (NaN/inf) samples")
        return problems
    scored = audio[: int(round(rules.scored_seconds * sr))]
    rms = float(np.sqrt(np.mean(np.square(scored, dtype=np.float64))))
    if rms <= rules.rms_floor:
        problems.append(
            f"{path.name}: silent (RMS {rms:.2e} of the first {rules.scored_seconds:g} s "
            f"<= floor {rules.rms_floor:.0e})"
        )
    return problems


def validate_submission(
    sub_dir: str | os.PathLike, expected_ids: Sequence[str], rules: SubmissionRules
) -> list[str]:
    """Every rule violation of the submission in ``sub_dir`` against the expected prompt ids (empty = valid)."""
    rules = rules
    d = Path(sub_dir)
    if not d.is_dir():
        return [f"{d}: submission directory not found"]
    expected = set(expected_ids)
    problems = [
        f"missing prompt {pid}: no {pid}.wav" for pid in sorted(expected) if not (d / f"{pid}.wav").is_file()
    ]
    for f in sorted(d.iterdir()):
        if f.suffix.lower() == ".wav":
            if f.suffix == ".wav" and f.stem in expected:
                problems += check_audio_file(f, rules)
            else:
                problems.append(f"extra file {f.name}: not <prompt_id>.wav for a prompt of the set")
        elif f.name not in KNOWN_FILES:
            problems.append(
                f"unexpected file {f.name} (a submission holds <prompt_id>.wav, {', '.join(KNOWN_FILES)})"
            )
    for name in ("manifest.csv", "metrics.json"):
        if not (d / name).is_file():
            problems.append(f"{name} is missing")
    if (d / "manifest.csv").is_file():
        problems += _check_manifest(d / "manifest.csv", expected)
    return problems


def _check_manifest(path: Path, expected: set[str]) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing_cols = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing_cols:
            return [f"manifest.csv: missing column(s) {', '.join(missing_cols)}"]
        rows = list(reader)
    listed = [r["prompt_id"] for r in rows]
    problems = []
    if sorted(listed) != sorted(expected):
        gone, extra = sorted(expected - set(listed)), sorted(set(listed) - expected)
        dupes = sorted({x for x in listed if listed.count(x) > 1})
        problems.append(
            f"manifest.csv: prompt ids do not match the prompt set (missing {gone}, extra {extra}, "
            f"duplicated {dupes})"
        )
    problems += [
        f"manifest.csv: {r['prompt_id']} points at {r['file']!r}, expected {r['prompt_id']}.wav"
        for r in rows
        if r["file"] != f"{r['prompt_id']}.wav"
    ]
    return problems


def check_submission(
    sub_dir: str | os.PathLike,
    expected_ids: Sequence[str],
    rules: SubmissionRules,
    where: str | None = None,
) -> None:
    """Raise SubmissionError listing every violation; return quietly when the submission is valid."""
    problems = validate_submission(sub_dir, expected_ids, rules)
    if problems:
        raise SubmissionError(where or str(sub_dir), problems)
