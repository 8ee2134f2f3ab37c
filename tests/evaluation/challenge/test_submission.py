"""The submission package: {team}_{track}_{n}.zip of exactly-10 s WAVs, its parameter count, and its check."""

import io
import json
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from safetensors.numpy import save_file

from evaluation.challenge.package import fit_to_package, packaged_pcm, pcm_sha256
from evaluation.challenge.parameters import count_parameters, parameter_problems
from evaluation.challenge.prompts import Prompt, save_prompts
from evaluation.challenge.submission import (
    SubmissionError,
    SubmissionRules,
    SubmitParamsError,
    build_submission,
    read_best_seeds,
    validate_submission,
)
from pipelines.check_submission import main
from pipelines.submit import run_stage
from tests import defaults
from tests.cli import user_error
from tests.defaults import config

PROMPTS = [
    Prompt("p1", "calm piano", {"instrument": ("piano",)}),
    Prompt("p2", "loud rock", {"genre": ("rock",)}, split="ood"),
]
IDS = [p.prompt_id for p in PROMPTS]
RULES = config(SubmissionRules, "submit")
ZIP = "flowjam_efficiency_1.zip"
COUNT = {"parameters": 1234, "tensors": 1, "counted": "test", "weights_sha256": "0" * 64}


def _tone(path, seconds=10.2, sr=44100, freq=440.0, amp=0.3, subtype="PCM_16", channels=2):
    t = np.arange(int(round(seconds * sr))) / sr
    wav = amp * np.sin(2 * np.pi * freq * t)
    sf.write(str(path), np.repeat(wav[:, None], channels, axis=1), sr, subtype=subtype)
    return path


def _generated(tmp_path, seconds=10.2):
    """generated/<pid>/seed-<k>.wav for 2 prompts × 2 seeds; seed k has frequency 300 + 100k."""
    files = {}
    for pid in IDS:
        for k in range(2):
            (tmp_path / "generated" / pid).mkdir(parents=True, exist_ok=True)
            path = tmp_path / "generated" / pid / f"seed-{k}.wav"
            files[(pid, k)] = str(_tone(path, seconds=seconds, freq=300 + 100 * k))
    return files


def _metrics(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"fad": 1.0, "clap": 0.2, "ccs": 0.5}))
    return path


def _valid_submission(tmp_path, seeds=None):
    seeds = seeds or {"p1": 0, "p2": 0}
    return build_submission(
        PROMPTS, seeds, _generated(tmp_path), tmp_path / "sub", _metrics(tmp_path), RULES, COUNT
    )


def _member(sub, name):
    with zipfile.ZipFile(sub / ZIP) as zf:
        return zf.read(name)


def test_build_writes_one_zip_of_exact_10s_wavs_with_manifest_and_parameter_count(tmp_path):
    files = _generated(tmp_path)
    out = build_submission(
        PROMPTS, {"p1": 1, "p2": 0}, files, tmp_path / "submission", _metrics(tmp_path), RULES, COUNT
    )
    assert sorted(f.name for f in out.iterdir()) == sorted(
        [ZIP, "manifest.csv", "metrics.json", "parameter_count.json"]
    )
    with zipfile.ZipFile(out / ZIP) as zf:
        assert zf.namelist() == ["p1.wav", "p2.wav"]  # flat, sorted, nothing else
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())  # no build time inside
    for name, seed_file in (("p1.wav", files[("p1", 1)]), ("p2.wav", files[("p2", 0)])):
        info = sf.info(io.BytesIO(_member(out, name)))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (44100, 2, 441000, "PCM_16")
        pcm, _ = sf.read(io.BytesIO(_member(out, name)), dtype="int16")
        np.testing.assert_array_equal(pcm, packaged_pcm(seed_file, RULES.format))
    lines = (out / "manifest.csv").read_text().splitlines()
    assert lines[0] == "prompt_id,file,seed,seconds,sample_rate,split,caption"
    assert lines[1:] == ["p1,p1.wav,1,10.0,44100,ranked,calm piano", "p2,p2.wav,0,10.0,44100,ood,loud rock"]
    count = json.loads((out / "parameter_count.json").read_text())
    assert count == {"track": "efficiency", "limit": 500_000_000, **COUNT}
    assert validate_submission(out, IDS, RULES) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".submission")], "staging dir left behind"
    again = build_submission(
        PROMPTS, {"p1": 1, "p2": 0}, files, tmp_path / "again", _metrics(tmp_path), RULES, COUNT
    )
    assert (again / ZIP).read_bytes() == (out / ZIP).read_bytes()  # deterministic package


def test_trimming_cuts_to_exactly_10s_with_a_short_fade_and_keeps_an_exact_clip_as_is(tmp_path):
    fmt = RULES.format
    rng = np.random.default_rng(0)
    exact = (rng.integers(-20000, 20000, (2, 441000)) / 32768).astype(np.float32)
    np.testing.assert_array_equal(fit_to_package(exact, 44100, fmt).T / 32768, exact)  # sample for sample
    longer = np.concatenate([exact, exact[:, :44100]], axis=1)
    cut = fit_to_package(longer, 44100, fmt)
    assert cut.shape == (441000, 2)
    fade = int(0.05 * 44100)
    np.testing.assert_array_equal(cut[:-fade].T / 32768, exact[:, :-fade])  # untouched before the fade
    assert np.all(cut[-1] == 0) and np.abs(cut[-fade:]).mean() < np.abs(cut[-2 * fade : -fade]).mean()
    shorter = fit_to_package(exact[:, :400000], 44100, fmt)
    assert shorter.shape == (441000, 2) and not shorter[400000:].any()  # padded only when shorter
    mono_22k = fit_to_package(exact[:1, ::2], 22050, fmt)
    assert mono_22k.shape == (441000, 2)  # resampled and mapped to stereo


def _rewrite(sub, edit):
    """Replace the zip by ``edit({name: bytes}) -> {name: bytes}``."""
    with zipfile.ZipFile(sub / ZIP) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members = edit(members)
    with zipfile.ZipFile(sub / ZIP, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _wav(seconds=10.0, sr=44100, channels=2, amp=0.3, fmt="WAV", subtype="PCM_16"):
    t = np.arange(int(round(seconds * sr))) / sr
    buf = io.BytesIO()
    sf.write(
        buf,
        np.repeat((amp * np.sin(2 * np.pi * 440 * t))[:, None], channels, 1),
        sr,
        format=fmt,
        subtype=subtype,
    )
    return buf.getvalue()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: {**m, "p1.wav": _wav(seconds=9.9)},
            "member p1.wav: 436590 frames (9.900 s), expected exactly",
        ),
        (lambda m: {**m, "p1.wav": _wav(seconds=10.5)}, "member p1.wav: 463050 frames (10.500 s)"),
        (lambda m: {**m, "notes.txt": b"x"}, "member notes.txt: not {id}.wav for a prompt of the set"),
        (lambda m: {**m, "p9.wav": m["p1.wav"]}, "member p9.wav: not {id}.wav for a prompt of the set"),
        (
            lambda m: {"P1.wav" if k == "p1.wav" else k: v for k, v in m.items()},
            "member P1.wav: not {id}.wav",
        ),
        (
            lambda m: {f"sub/{k}" if k == "p2.wav" else k: v for k, v in m.items()},
            "member sub/p2.wav: not at the top level",
        ),
        (lambda m: {k: v for k, v in m.items() if k != "p2.wav"}, "missing member p2.wav"),
        (lambda m: {**m, "p1.wav": _wav(sr=48000)}, "member p1.wav: sample rate 48000 Hz, expected 44100"),
        (lambda m: {**m, "p1.wav": _wav(channels=1)}, "member p1.wav: 1 channel(s), expected 2"),
        (lambda m: {**m, "p1.wav": _wav(amp=0.0)}, "member p1.wav: silent"),
        (lambda m: {**m, "p1.wav": _wav(fmt="FLAC", subtype="PCM_16")}, "member p1.wav: format FLAC"),
        (lambda m: {**m, "p1.wav": b"RIFF nonsense"}, "member p1.wav: not a readable audio file"),
    ],
    ids=[
        "9.9s",
        "10.5s",
        "stray",
        "extra-id",
        "wrong-name",
        "nested",
        "missing",
        "rate",
        "mono",
        "silent",
        "flac",
        "garbage",
    ],  # fmt: skip
)
def test_a_hand_broken_zip_is_refused_naming_the_member(tmp_path, edit, message):
    sub = _valid_submission(tmp_path)
    assert validate_submission(sub, IDS, RULES) == []
    _rewrite(sub, edit)
    problems = validate_submission(sub, IDS, RULES)
    assert any(message in p and p.startswith(ZIP) for p in problems), problems
    save_prompts(tmp_path / "prompts.jsonl", PROMPTS)
    for target in (sub, sub / ZIP):  # the check CLI on the directory and on the zip alone
        assert main([str(target), "--prompts", str(tmp_path / "prompts.jsonl")]) == 1


def test_a_corrupt_member_fails_its_crc(tmp_path):
    sub = _valid_submission(tmp_path)
    data = bytearray((sub / ZIP).read_bytes())
    at = data.index(b"data", 100) + 1000  # inside p1.wav's samples: the stored CRC no longer matches
    data[at] ^= 0xFF
    (sub / ZIP).write_bytes(bytes(data))
    assert any("CRC check failed" in p for p in validate_submission(sub, IDS, RULES))


def test_the_submission_directory_holds_nothing_else(tmp_path):
    sub = _valid_submission(tmp_path)
    _tone(sub / "p1.wav")
    (sub / "other_performance_2.zip").write_bytes(b"")
    (sub / "parameter_count.json").unlink()
    text = "\n".join(validate_submission(sub, IDS, RULES))
    assert "unexpected file p1.wav" in text and "another package other_performance_2.zip" in text
    assert "parameter_count.json is missing" in text
    (sub / ZIP).unlink()
    assert f"{ZIP} is missing" in "\n".join(validate_submission(sub, IDS, RULES))


def test_parameter_count_comes_from_the_exported_weights_and_is_checked_against_the_track(tmp_path):
    save_file(
        {"a": np.zeros((3, 4), np.float32), "b": np.zeros(5, np.float32)}, str(tmp_path / "model.safetensors")
    )
    (tmp_path / "config.json").write_text(
        json.dumps({"text": {"encoder": "minilm"}, "codec": {"name": "mel"}})
    )
    count = count_parameters(tmp_path)
    assert (count["parameters"], count["tensors"]) == (17, 2) and len(count["weights_sha256"]) == 64
    assert count["not_counted"] == {"text_encoder": "minilm", "codec": "mel"}
    assert parameter_problems(count, "efficiency") == []
    big = {**count, "parameters": 500_000_001}
    assert "exceed the efficiency track's limit of 500,000,000" in parameter_problems(big, "efficiency")[0]
    assert parameter_problems(big, "performance") == []
    sub = _valid_submission(tmp_path / "s")
    (sub / "parameter_count.json").write_text(json.dumps({"track": "efficiency", **big}))
    assert any("exceed the efficiency" in p for p in validate_submission(sub, IDS, RULES))


def test_bad_submit_params_name_the_key():
    with pytest.raises(SubmitParamsError, match="submit.track = 'fast'"):
        config(SubmissionRules, "submit", track="fast")
    with pytest.raises(SubmitParamsError, match="submit.team = 'my_team'"):
        config(SubmissionRules, "submit", team="my_team")
    assert config(SubmissionRules, "submit", team="ab-1", track="performance", attempt=2).zip_name == (
        "ab-1_performance_2.zip"
    )


def test_failed_build_keeps_the_previous_submission(tmp_path):
    sub = _valid_submission(tmp_path)
    before = (sub / ZIP).read_bytes()
    silent = _tone(tmp_path / "silent.wav", amp=0.0)
    with pytest.raises(SubmissionError, match="member p1.wav: silent"):
        build_submission(
            PROMPTS, {"p1": 0, "p2": 0}, {("p1", 0): silent, ("p2", 0): silent}, sub, None, RULES, COUNT
        )
    assert (sub / ZIP).read_bytes() == before


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
    assert main([str(sub / ZIP), "--prompts", str(tmp_path / "prompts.jsonl")]) == 0
    save_prompts(tmp_path / "more.jsonl", [*PROMPTS, Prompt("p3", "x")])
    assert main([str(sub), "--prompts", str(tmp_path / "more.jsonl")]) == 1


def _stage_inputs(tmp_path, best=None, scored=None):
    files = _generated(tmp_path)
    gen = tmp_path / "generated"
    save_prompts(gen / "prompts.jsonl", PROMPTS)
    keys = list(files)
    pq.write_table(
        pa.table(
            {"prompt_id": [k[0] for k in keys], "seed": [k[1] for k in keys], "path": list(files.values())}
        ),
        gen / "manifest.parquet",
    )
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "best_seeds.json").write_text(json.dumps(best or {"p1": 0, "p2": 1}))
    (reports / "metrics.json").write_text(json.dumps({"fad": 2.0}))
    sha = scored or {k: pcm_sha256(packaged_pcm(files[k], RULES.format)) for k in keys}
    pq.write_table(
        pa.table({"prompt_id": [k[0] for k in keys], "seed": [k[1] for k in keys], "package_sha256": [sha[k] for k in keys]}),
        reports / "per_prompt.parquet",
    )  # fmt: skip
    model = tmp_path / "models" / "final"
    model.mkdir(parents=True)
    save_file({"w": np.zeros((10, 10), np.float32)}, str(model / "model.safetensors"))
    return defaults.params(
        {
            "generate": {"out_dir": str(gen)},
            "evaluate": {"out_dir": str(reports)},
            "train": {"out_dir": str(model)},
            "submit": {"out_dir": str(tmp_path / "submission"), "team": "t-1", "track": "performance"},
        }
    ), files


def test_submit_stage_end_to_end(tmp_path, run_records):
    params, files = _stage_inputs(tmp_path)
    out = run_stage(params)
    rules = config(SubmissionRules, "submit", team="t-1", track="performance")
    assert validate_submission(out, IDS, rules) == []
    assert not (out / "provenance.json").exists()  # run facts go to the run record, outside the hashed output
    assert json.loads((run_records / "submit.json").read_text())["stage"] == "submit"
    count = json.loads((out / "parameter_count.json").read_text())
    assert (count["parameters"], count["track"], count["limit"]) == (100, "performance", None)
    with zipfile.ZipFile(out / "t-1_performance_1.zip") as zf:
        pcm, _ = sf.read(io.BytesIO(zf.read("p2.wav")), dtype="int16")
    np.testing.assert_array_equal(pcm, packaged_pcm(files[("p2", 1)], rules.format))


def test_submit_refuses_audio_that_evaluate_did_not_score(tmp_path, capsys):
    params, files = _stage_inputs(
        tmp_path, scored={k: "f" * 64 for k in [(p, s) for p in IDS for s in (0, 1)]}
    )
    with pytest.raises(SubmissionError, match="member p1.wav: not the clip the evaluate stage scored"):
        run_stage(params)
    assert not (tmp_path / "submission").exists()


def test_missing_metrics_file_is_flagged_and_fails_the_stage(tmp_path):
    sub = _valid_submission(tmp_path / "a")
    (sub / "metrics.json").unlink()
    assert "metrics.json is missing" in validate_submission(sub, IDS, RULES)
    params, _ = _stage_inputs(tmp_path / "b")
    (tmp_path / "b" / "reports" / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"metrics\.json.*run the evaluate stage"):
        run_stage(params)
    assert not (tmp_path / "b" / "submission").exists()


def test_submit_stage_ends_a_bad_track_with_one_line(tmp_path, capsys):
    from pipelines.submit import main as submit_main

    (tmp_path / "params.yaml").write_text("submit:\n  track: fastest\n")
    assert "submit.track = 'fastest'" in user_error(
        capsys, submit_main, ["--params", str(tmp_path / "params.yaml")]
    )


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
        (lambda ls: [*ls, "p7,p7.wav,0,10.0,44100,ranked,x"], "extra ['p7']"),
    ],
    ids=["column", "missing-row", "duplicate", "wrong-file", "extra-row"],
)
def test_validator_flags_a_bad_manifest(tmp_path, edit, message):
    sub = _valid_submission(tmp_path)
    _rewrite_manifest(sub, edit)
    problems = validate_submission(sub, IDS, RULES)
    assert any(message in p for p in problems), problems
