"""The challenge submission: package the best seed per prompt as ``{team}_{track}_{n}.zip`` and check it.

``submission/`` holds:

- ``{team}_{track}_{attempt}.zip`` — what is sent: ``{prompt_id}.wav`` per prompt, flat, 16-bit PCM at
  ``submit.sample_rate`` with ``submit.channels``, exactly ``submit.seconds`` (:mod:`evaluation.challenge.package`);
- ``parameter_count.json`` — the parameter count of the exported model and the track's limit
  (:mod:`evaluation.challenge.parameters`), the proof an efficiency-track entry adds;
- ``manifest.csv`` (prompt_id, file, seed, seconds, sample_rate, split, caption), ``metrics.json`` (a copy of the
  evaluation metrics); the stage's run facts go to its run record (``provenance/submit.json``), outside this
  folder.

``build_submission`` assembles it beside the target, checks it by re-opening the zip (``validate_submission``),
and only then swaps it into place, so a failed build leaves the previous submission untouched. With the scored
fingerprints of the evaluate stage it also refuses a package whose audio is not the audio that was scored.

    python -m pipelines.check_submission submission/ --prompts generated/prompts.jsonl
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.challenge.package import (
    ZIP_NAME,
    PackageFormat,
    check_package,
    packaged_pcm,
    pcm_sha256,
    wav_bytes,
    write_package,
)
from evaluation.challenge.parameters import TRACK_LIMITS, parameter_problems
from evaluation.challenge.prompts import Prompt
from model.runtime.atomic_io import atomic_dir, atomic_path, write_json_atomic
from model.runtime.errors import InputError

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("prompt_id", "file", "seed", "seconds", "sample_rate", "split", "caption")
PARAMETER_FILE = "parameter_count.json"
REQUIRED_FILES = ("manifest.csv", "metrics.json", PARAMETER_FILE)
KNOWN_FILES = (*REQUIRED_FILES, "provenance.json")
FINAL_ATTEMPTS = 2  # reported: at most two final submissions per team


class SubmitParamsError(InputError, ValueError):
    """A ``submit.*`` value the package cannot be made with."""


class SubmissionError(InputError, RuntimeError):
    """The submission breaks the rules; ``violations`` lists every problem, one line each."""

    def __init__(self, where: str, violations: Sequence[str]):
        self.violations = list(violations)
        lines = "\n  - ".join(self.violations)
        super().__init__(f"{where}: {len(self.violations)} rule violation(s):\n  - {lines}")


@dataclass(frozen=True)
class SubmissionRules:
    """``submit.*``: who submits (team, track, attempt), the packaged audio (rate, channels, seconds) and our
    silence threshold ``rms_floor``."""

    team: str
    track: str
    attempt: int
    sample_rate: int
    channels: int
    seconds: float
    rms_floor: float

    def __post_init__(self) -> None:
        if not ZIP_NAME.match(f"{self.team}_{self.track}_{self.attempt}.zip") or not self.team:
            raise SubmitParamsError(
                f"params.yaml: submit.team = {self.team!r}: use letters, digits and '-' only "
                "(it names the zip {team}_{track}_{n}.zip, whose parts are split at '_')"
            )
        if self.track not in TRACK_LIMITS:
            raise SubmitParamsError(
                f"params.yaml: submit.track = {self.track!r}: must be one of {', '.join(TRACK_LIMITS)}"
            )
        try:
            self.format  # noqa: B018 (validates rate, channels and seconds)
        except ValueError as exc:
            raise SubmitParamsError(f"params.yaml: {exc}") from None

    @property
    def format(self) -> PackageFormat:
        return PackageFormat(self.sample_rate, self.channels, self.seconds)

    @property
    def zip_name(self) -> str:
        return f"{self.team}_{self.track}_{self.attempt}.zip"


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
    parameter_count: Mapping[str, Any],
    scored_sha256: Mapping[tuple[str, int], str] | None = None,
) -> Path:
    """Package, check and only then publish ``out_dir`` (a failed build leaves any old one untouched).

    ``generated`` maps (prompt_id, seed index) to the generated WAV; ``scored_sha256`` the same keys to the
    fingerprint of the packaged clip the evaluate stage scored (checked when given). Raises SubmissionError.
    """
    out = Path(out_dir)
    fmt = rules.format
    if rules.attempt > FINAL_ATTEMPTS:
        log.warning(
            "submit.attempt = %d: teams reportedly send at most %d final submissions", rules.attempt, 2
        )
    with atomic_dir(out) as staging:
        missing = [
            f"prompt {p.prompt_id}: no generated file for seed {best_seeds.get(p.prompt_id)}"
            for p in prompts
            if (p.prompt_id, best_seeds.get(p.prompt_id)) not in generated
        ]
        if missing:
            raise SubmissionError(str(out), missing)
        members, rows, unscored = {}, [], []
        for p in prompts:
            key = (p.prompt_id, best_seeds[p.prompt_id])
            pcm = packaged_pcm(generated[key], fmt)
            name = f"{p.prompt_id}.wav"
            if scored_sha256 is not None and scored_sha256.get(key) != pcm_sha256(pcm):
                unscored.append(
                    f"member {name}: not the clip the evaluate stage scored for seed {key[1]} "
                    f"(packaged {pcm_sha256(pcm)[:12]}, scored {str(scored_sha256.get(key))[:12]}); "
                    "rerun evaluate (dvc repro evaluate)"
                )
            members[name] = wav_bytes(pcm, fmt.sample_rate)
            rows.append(
                {
                    "prompt_id": p.prompt_id,
                    "file": name,
                    "seed": key[1],
                    "seconds": round(pcm.shape[0] / fmt.sample_rate, 6),
                    "sample_rate": fmt.sample_rate,
                    "split": p.split,
                    "caption": p.caption,
                }
            )
        if unscored:
            raise SubmissionError(str(out), unscored)
        write_package(staging / rules.zip_name, members)
        write_manifest(staging / "manifest.csv", rows)
        limit = TRACK_LIMITS[rules.track]
        write_json_atomic(staging / PARAMETER_FILE, {"track": rules.track, "limit": limit, **parameter_count})
        if metrics_path is not None:
            (staging / "metrics.json").write_bytes(Path(metrics_path).read_bytes())
        check_submission(staging, [p.prompt_id for p in prompts], rules, where=str(out))
    log.info("submission %s: %s with %d clips, all rules met", out, rules.zip_name, len(prompts))
    return out


def write_manifest(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def zip_name_problems(name: str) -> list[str]:
    """What is wrong with a package's file name (``{team}_{track}_{n}.zip``)."""
    match = ZIP_NAME.match(name)
    if match is None:
        return [f"{name}: not named {{team}}_{{track}}_{{n}}.zip (team: letters, digits, '-'; n: a number)"]
    if match["track"] not in TRACK_LIMITS:
        return [f"{name}: track {match['track']!r} is not one of {', '.join(TRACK_LIMITS)}"]
    return []


def validate_package_file(
    zip_path: str | os.PathLike, expected_ids: Sequence[str], fmt: PackageFormat, rms_floor: float
) -> list[str]:
    """Every problem of one zip: its name, then each member (each line names the zip and the member)."""
    p = Path(zip_path)
    return zip_name_problems(p.name) + [
        f"{p.name}: {x}" for x in check_package(p, expected_ids, fmt, rms_floor)
    ]


def validate_submission(
    sub_dir: str | os.PathLike, expected_ids: Sequence[str], rules: SubmissionRules
) -> list[str]:
    """Every rule violation of the submission in ``sub_dir`` against the expected prompt ids (empty = valid)."""
    d = Path(sub_dir)
    if not d.is_dir():
        return [f"{d}: submission directory not found"]
    problems = []
    for f in sorted(d.iterdir()):
        if f.name != rules.zip_name and f.name not in KNOWN_FILES:
            what = "another package" if f.suffix == ".zip" else "unexpected file"
            problems.append(
                f"{what} {f.name} (a submission holds {rules.zip_name}, {', '.join(KNOWN_FILES)})"
            )
    if (d / rules.zip_name).is_file():
        problems += validate_package_file(d / rules.zip_name, expected_ids, rules.format, rules.rms_floor)
    else:
        problems.append(f"{rules.zip_name} is missing (submit.team, submit.track and submit.attempt name it)")
    problems += [f"{name} is missing" for name in REQUIRED_FILES if not (d / name).is_file()]
    if (d / PARAMETER_FILE).is_file():
        problems += parameter_file_problems(d / PARAMETER_FILE, rules.track)
    if (d / "manifest.csv").is_file():
        problems += _check_manifest(d / "manifest.csv", set(expected_ids))
    return problems


def parameter_file_problems(path: Path, track: str) -> list[str]:
    """The parameter-count file must be for ``track`` and within its limit."""
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return [f"{path.name}: not valid JSON ({exc.msg})"]
    if not isinstance(record, dict):
        return [f"{path.name}: expected a JSON object"]
    problems = [f"{path.name}: {x}" for x in parameter_problems(record, track)]
    if record.get("track") != track:
        problems.append(
            f"{path.name}: written for track {record.get('track')!r}, the package is for {track!r}"
        )
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
