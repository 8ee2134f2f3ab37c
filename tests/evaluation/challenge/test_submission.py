import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from evaluation.challenge.prompts import Prompt, save_prompts
from evaluation.challenge.submission import (
    SubmissionError,
    SubmissionRules,
    build_submission,
    read_best_seeds,
    validate_submission,
)
from pipelines.check_submission import main
from pipelines.submit import run_stage
from tests import defaults
from tests.defaults import config

PROMPTS = [
    Prompt("p1", "calm piano", {"instrument": ("piano",)}),
    Prompt("p2", "loud rock", {"genre": ("rock",)}),
]
IDS = [p.prompt_id for p in PROMPTS]
RULES = config(SubmissionRules, "submit")


def _tone(path, seconds=10.2, sr=44100, freq=440.0, amp=0.3, subtype="PCM_16", channels=2):
    t = np.arange(int(round(seconds * sr))) / sr
    wav = amp * np.sin(2 * np.pi * freq * t)
    sf.write(str(path), np.repeat(wav[:, None], channels, axis=1), sr, subtype=subtype)
    return path


def _generated(tmp_path):
    """generated/<pid>/seed-<k>.wav for 2 prompts × 2 seeds; seed k has frequency 300 + 100k."""
    files = {}
    for pid in IDS:
        for k in range(2):
            (tmp_path / "generated" / pid).mkdir(parents=True, exist_ok=True)
            files[(pid, k)] = str(_tone(tmp_path / "generated" / pid / f"seed-{k}.wav", freq=300 + 100 * k))
    return files


def _metrics(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"fad": 1.0, "clap": 0.2, "ccs": 0.5}))
    return path


def test_build_writes_best_seeds_manifest_and_metrics_and_validates(tmp_path):
    files = _generated(tmp_path)
    out = build_submission(
        PROMPTS, {"p1": 1, "p2": 0}, files, tmp_path / "submission", _metrics(tmp_path), RULES
    )
    assert sorted(f.name for f in out.iterdir()) == ["manifest.csv", "metrics.json", "p1.wav", "p2.wav"]
    assert (out / "p1.wav").read_bytes() == (tmp_path / "generated/p1/seed-1.wav").read_bytes()
    assert (out / "p2.wav").read_bytes() == (tmp_path / "generated/p2/seed-0.wav").read_bytes()
    lines = (out / "manifest.csv").read_text().splitlines()
    assert lines[0] == "prompt_id,file,seed,seconds,sample_rate,caption"
    assert lines[1] == "p1,p1.wav,1,10.2,44100,calm piano"
    assert json.loads((out / "metrics.json").read_text())["ccs"] == 0.5
    assert validate_submission(out, IDS, RULES) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".submission")], "staging dir left behind"


def _valid_submission(tmp_path):
    return build_submission(
        PROMPTS, {"p1": 0, "p2": 0}, _generated(tmp_path), tmp_path / "sub", _metrics(tmp_path), RULES
    )


def test_validator_rejects_short_low_rate_and_missing_files_listing_all(tmp_path):
    sub = _valid_submission(tmp_path)
    _tone(sub / "p1.wav", seconds=9.0)
    _tone(sub / "p2.wav", sr=22050)
    problems = validate_submission(sub, [*IDS, "p3"], RULES)
    text = "\n".join(problems)
    assert "p1.wav: 9.000 s long" in text
    assert "p2.wav: sample rate 22050 Hz, expected 44100 Hz" in text
    assert "missing prompt p3" in text
    with pytest.raises(SubmissionError, match=r"(?s)violation.*p1\.wav.*p2\.wav"):
        build_submission(
            PROMPTS,
            {"p1": 0, "p2": 0},
            {("p1", 0): sub / "p1.wav", ("p2", 0): sub / "p2.wav"},
            tmp_path / "sub2",
            None,
            RULES,
        )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: _tone(d / "p1.wav", amp=0.0), "silent"),
        (lambda d: _tone(d / "p1.wav", amp=1e-6), "silent"),
        (
            lambda d: sf.write(
                str(d / "p1.wav"), np.full((441000, 2), np.nan, np.float32), 44100, subtype="FLOAT"
            ),
            "non-finite",
        ),
        (lambda d: _tone(d / "p9.wav"), "extra file p9.wav"),
        (lambda d: (d / "notes.txt").write_text("x"), "unexpected file notes.txt"),
        (lambda d: sf.write(str(d / "p1.wav"), np.zeros((10, 2)), 44100, format="FLAC"), "format FLAC"),
        (lambda d: (d / "manifest.csv").unlink(), "manifest.csv is missing"),
        (lambda d: (d / "p2.wav").unlink(), "missing prompt p2"),
    ],
)
def test_validator_flags_each_rule(tmp_path, damage, message):
    sub = _valid_submission(tmp_path)
    assert validate_submission(sub, IDS, RULES) == []
    damage(sub)
    assert message in "\n".join(validate_submission(sub, IDS, RULES))


def test_failed_build_keeps_the_previous_submission(tmp_path):
    sub = _valid_submission(tmp_path)
    before = (sub / "p1.wav").read_bytes()
    short = _tone(tmp_path / "short.wav", seconds=5.0)
    with pytest.raises(SubmissionError, match="5.000 s long"):
        build_submission(PROMPTS, {"p1": 0, "p2": 0}, {("p1", 0): short, ("p2", 0): short}, sub, None, RULES)
    assert (sub / "p1.wav").read_bytes() == before


def test_read_best_seeds_formats_and_errors(tmp_path):
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"p1": 1, "p2": 0, "rule": "fad_clap"}))
    assert read_best_seeds(path, IDS) == {"p1": 1, "p2": 0}
    path.write_text(json.dumps({"rule": "x", "seeds": {"p1": {"seed": 2, "score": 0.1}, "p2": 0}}))
    assert read_best_seeds(path, IDS) == {"p1": 2, "p2": 0}
    path.write_text(json.dumps({"p1": "a"}))
    with pytest.raises(SubmissionError, match=r"(?s)p1: best seed 'a'.*p2: no best seed"):
        read_best_seeds(path, IDS)


def test_check_cli_exit_codes(tmp_path):
    sub = _valid_submission(tmp_path)
    save_prompts(tmp_path / "prompts.jsonl", PROMPTS)
    assert main([str(sub), "--prompts", str(tmp_path / "prompts.jsonl")]) == 0
    save_prompts(tmp_path / "more.jsonl", [*PROMPTS, Prompt("p3", "x")])
    assert main([str(sub), "--prompts", str(tmp_path / "more.jsonl")]) == 1


def test_submit_stage_end_to_end(tmp_path):
    files = _generated(tmp_path)
    gen = tmp_path / "generated"
    save_prompts(gen / "prompts.jsonl", PROMPTS)
    pq.write_table(
        pa.table(
            {"prompt_id": [k[0] for k in files], "seed": [k[1] for k in files], "path": list(files.values())}
        ),
        gen / "manifest.parquet",
    )
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "best_seeds.json").write_text(json.dumps({"p1": 0, "p2": 1}))
    (reports / "metrics.json").write_text(json.dumps({"fad": 2.0}))
    params = {
        "generate": {"out_dir": str(gen)},
        "evaluate": {"out_dir": str(reports)},
        "submit": {"out_dir": str(tmp_path / "submission"), "rms_floor": 1e-4},
    }
    out = run_stage(defaults.params(params))
    assert validate_submission(out, IDS, RULES) == []
    assert json.loads((out / "provenance.json").read_text())["stage"] == "submit"
    assert (out / "p2.wav").read_bytes() == (gen / "p2" / "seed-1.wav").read_bytes()


def _rewrite_manifest(sub, edit):
    lines = (sub / "manifest.csv").read_text().splitlines()
    (sub / "manifest.csv").write_text("\n".join(edit(lines)) + "\n")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: [ls[0].replace("file,", "path,"), *ls[1:]], "missing column(s) file"),
        (lambda ls: [ls[0], ls[1]], "missing ['p2']"),
        (lambda ls: [*ls, ls[1]], "duplicated ['p1']"),
        (lambda ls: [ls[0], ls[1].replace("p1.wav", "p2.wav"), ls[2]], "p1 points at 'p2.wav'"),
        (lambda ls: [*ls, "p7,p7.wav,0,10.2,44100,x"], "extra ['p7']"),
    ],
    ids=["column", "missing-row", "duplicate", "wrong-file", "extra-row"],
)
def test_validator_flags_a_bad_manifest(tmp_path, edit, message):
    sub = _valid_submission(tmp_path)
    _rewrite_manifest(sub, edit)
    problems = validate_submission(sub, IDS, RULES)
    assert any(message in p for p in problems), problems


def test_missing_metrics_file_is_flagged_and_fails_the_stage(tmp_path):
    sub = _valid_submission(tmp_path)
    (sub / "metrics.json").unlink()
    assert "metrics.json is missing" in validate_submission(sub, IDS, RULES)
    gen = tmp_path / "generated"
    save_prompts(gen / "prompts.jsonl", PROMPTS)
    files = {(pid, 0): str(gen / pid / "seed-0.wav") for pid in IDS}
    pq.write_table(
        pa.table(
            {"prompt_id": [k[0] for k in files], "seed": [k[1] for k in files], "path": list(files.values())}
        ),
        gen / "manifest.parquet",
    )
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "best_seeds.json").write_text(json.dumps({"p1": 0, "p2": 0}))
    params = {
        "generate": {"out_dir": str(gen)},
        "evaluate": {"out_dir": str(tmp_path / "reports")},
        "submit": {"out_dir": str(tmp_path / "out"), "rms_floor": 1e-4},
    }
    with pytest.raises(FileNotFoundError, match=r"metrics\.json.*run the evaluate stage"):
        run_stage(defaults.params(params))
    assert not (tmp_path / "out").exists()


def test_clip_silent_only_in_its_scored_first_10_seconds_is_rejected(tmp_path):
    sub = _valid_submission(tmp_path)
    sr = 44100
    late = np.zeros((15 * sr, 2), np.float32)
    late[10 * sr + 100 :] = 0.5  # loud from 10 s on: its overall RMS is far above the floor
    sf.write(str(sub / "p1.wav"), late, sr, subtype="PCM_16")
    assert float(np.sqrt(np.mean(late.astype(np.float64) ** 2))) > 0.1
    problems = validate_submission(sub, IDS, RULES)
    assert any("p1.wav: silent" in p and "first 10 s" in p for p in problems), problems
    early = np.zeros((15 * sr, 2), np.float32)
    early[: 10 * sr] = 0.5  # loud in the scored part, silent afterwards: valid
    sf.write(str(sub / "p1.wav"), early, sr, subtype="PCM_16")
    assert validate_submission(sub, IDS, RULES) == []
