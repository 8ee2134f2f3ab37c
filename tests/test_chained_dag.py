"""The whole DAG chained: ``dvc repro`` of every stage in a temporary copy of the repository on a tiny config.

Real stages, real offline components (synthetic data, mel codec, the packaged all-MiniLM-L6-v2 text encoder,
spectral embedder, trained tagger), a few training steps. Checks what each stage hands to the next, that DVC sees
the pipeline as up to date afterwards, and — through the params trace (``pipelines/common/params_trace.py``) —
that every stage's ``params:`` in dvc.yaml lists exactly the keys the stage read, so ``dvc exp run -S`` reruns the
right stages. Then what experiments rely on (docs/experiments.md): a second copy gives byte-identical outputs,
a temporary experiment that changes a generate param restores the trained model instead of retraining (and the
run cache serves a params set that already ran), an extended training resumes from the user's checkpoints, and
a rerun of encode does not cascade.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml

from evaluation.challenge.package import pcm_sha256
from pipelines.common.params_trace import TRACE_ENV, listed_keys, params_mismatch, read_keys

REPO = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "separate", "encode", "stats", "train", "generate", "evaluate", "submit")
N_TRACKS, N_PROMPTS, N_SEEDS, N_MELS, STEPS = 20, 3, 2, 16, 4
TINY = {
    "data": {"synthetic": {"n_tracks": N_TRACKS, "seconds": 10.0, "workers": 1}},
    "codec": {"mel": {"n_mels": N_MELS, "griffin_lim_iters": 2, "inversion_iters": 2}},
    "encode": {"workers": 1, "shard_rows": 8, "batch_size": 4},
    "text": {"max_length": 16},
    "model": {"hidden": 16, "depth": 1, "d_state": 4, "heads": 2, "time_dim": 16},
    "train": {
        "steps": STEPS,
        "batch_size": 4,
        "frames": 32,
        "val_every": 2,
        "val_batch_size": 4,
        "val_clips": 4,
        "ckpt_every": 2,
        "log_every": 1,
        "warmup": 1,
        "workers": 1,
    },
    "generate": {"n_prompts": N_PROMPTS, "seeds": N_SEEDS, "steps": 2, "batch_size": 6, "device": "cpu"},
    "evaluate": {"tagger_steps": 20, "local_clap_steps": 20},
}


def _deep_update(base: dict, over: dict) -> dict:
    for key, value in over.items():
        base[key] = _deep_update(base[key], value) if isinstance(value, dict) else value
    return base


def _copy_repository(dst: Path) -> None:
    """Tracked and new (not ignored) files of this checkout, without dvc.lock, as a fresh git repository."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if rel != "dvc.lock" and src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    for key, value in (("user.name", "test"), ("user.email", "test@localhost")):  # DVC commits experiments
        subprocess.run(["git", "config", key, value], cwd=dst, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dst, check=True)


def _tiny_copy(root: Path) -> dict:
    """A copy of this checkout in ``root`` with the tiny params; returns them."""
    _copy_repository(root)
    params = _deep_update(yaml.safe_load((root / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def _env(root: Path, **extra: str) -> dict[str, str]:
    """Stage subprocesses see the copy first; run records and checkpoints go where DVC says (no test overrides)."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(root),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **extra,
    }
    for name in ("RAY_ADDRESS", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "FLOWJAM_PROVENANCE_DIR"):
        env.pop(name, None)
    return env


def _dvc(root: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``dvc <args>`` in ``root``; fails the test with DVC's output when it fails."""
    env = _env(root)
    run = subprocess.run(
        [shutil.which("dvc", path=env["PATH"]) or "dvc", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, f"dvc {' '.join(args)} failed:\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}"
    return run


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("dag")
    params = _tiny_copy(root)
    env = _env(root, **{TRACE_ENV: str(root / "trace")})
    run = subprocess.run(
        [shutil.which("dvc", path=env["PATH"]) or "dvc", "repro"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, f"dvc repro failed:\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}"
    status = subprocess.run(["dvc", "status", "--json"], cwd=root, env=env, capture_output=True, text=True)
    return root, params, run, status


@pytest.mark.slow
def test_every_stage_ran_and_dvc_sees_the_pipeline_up_to_date(pipeline):
    root, _, run, status = pipeline
    for stage in STAGES:
        assert f"Running stage '{stage}'" in run.stdout, stage
    assert status.returncode == 0 and json.loads(status.stdout or "{}") == {}, status.stdout + status.stderr


@pytest.mark.slow
def test_data_hand_offs(pipeline):
    root, params, _, _ = pipeline
    tracks = pq.read_table(root / "data/prepared/tracks.parquet").to_pylist()
    assert len(tracks) == N_TRACKS and {t["split"] for t in tracks} == {"train", "validation", "test"}
    manifest = pq.read_table(root / "data/instrumental/manifest.parquet").to_pylist()
    assert sorted(m["track_id"] for m in manifest) == sorted(t["track_id"] for t in tracks)
    shards = sorted((root / "data/latents/shards").glob("shard-*.parquet"))
    rows = [
        r for s in shards for r in pq.read_table(s, columns=["track_id", "n_frames", "split"]).to_pylist()
    ]
    assert sorted(r["track_id"] for r in rows) == sorted(
        m["track_id"] for m in manifest
    )  # one clip per track
    meta = json.loads(pq.read_schema(shards[0]).metadata[b"flowjam"])
    assert meta["latent_shape"][0] == N_MELS
    stats = json.loads((root / "data/latents/stats.json").read_text())
    assert (
        stats["count"] == sum(r["n_frames"] for r in rows if r["split"] == "train")
        and len(stats["mean"]) == N_MELS
    )


@pytest.mark.slow
def test_model_hand_off(pipeline):
    root, params, _, _ = pipeline
    config = json.loads((root / "models/final/config.json").read_text())
    stats = json.loads((root / "data/latents/stats.json").read_text())
    assert (
        config["steps"] == STEPS and config["codec"] == params["codec"] and config["text"] == params["text"]
    )
    np.testing.assert_allclose(config["stats"]["mean"], stats["mean"])
    assert (root / "models/final/model.safetensors").is_file() and list(
        (root / "checkpoints").rglob("last.pt")
    )


@pytest.mark.slow
def test_generation_evaluation_and_submission_hand_offs(pipeline):
    root, _, _, _ = pipeline
    tracks = {t["track_id"]: t for t in pq.read_table(root / "data/prepared/tracks.parquet").to_pylist()}
    prompts = [json.loads(line) for line in (root / "generated/prompts.jsonl").read_text().splitlines()]
    ids = [p["prompt_id"] for p in prompts]
    assert len(ids) == N_PROMPTS and all(tracks[i]["split"] == "test" for i in ids)
    gen = pq.read_table(root / "generated/manifest.parquet").to_pylist()
    assert sorted((g["prompt_id"], g["seed"]) for g in gen) == sorted(
        (i, k) for i in ids for k in range(N_SEEDS)
    )
    for g in gen:
        info = sf.info(str(root / g["path"]))
        assert (info.samplerate, info.channels, info.frames) == (44100, 2, 441000)
    per_clip = pq.read_table(root / "reports/per_prompt.parquet").to_pylist()
    assert sorted((r["prompt_id"], r["seed"]) for r in per_clip) == sorted(
        (g["prompt_id"], g["seed"]) for g in gen
    )
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert all(np.isfinite(metrics[k]) for k in ("fad", "clap", "ccs"))
    # the built-in set's 80/20 rule on 3 prompts: 1 out of distribution, scored apart from the headline
    assert sorted(p["split"] for p in prompts) == ["ood", "ranked", "ranked"] and "ood" in metrics
    best = json.loads((root / "reports/best_seeds.json").read_text())
    assert set(best) == set(ids)
    assert {r["prompt_id"]: r["seed"] for r in per_clip if r["chosen"]} == best
    sub = root / "submission"
    assert sorted(p.name for p in sub.iterdir()) == sorted(
        [
            "flowjam_efficiency_1.zip",
            "manifest.csv",
            "metrics.json",
            "parameter_count.json",
        ]
    )
    scored = {r["prompt_id"]: r["package_sha256"] for r in per_clip if r["chosen"]}
    with zipfile.ZipFile(sub / "flowjam_efficiency_1.zip") as zf:
        assert sorted(zf.namelist()) == sorted(f"{i}.wav" for i in ids)
        for pid in ids:  # exactly 10.0 s, and the very samples evaluate scored (FAD on what is sent)
            pcm, rate = sf.read(io.BytesIO(zf.read(f"{pid}.wav")), dtype="int16")
            assert (pcm.shape, rate) == ((441000, 2), 44100) and pcm_sha256(pcm) == scored[pid]
    count = json.loads((sub / "parameter_count.json").read_text())
    assert count["track"] == "efficiency" and 0 < count["parameters"] <= count["limit"]
    assert json.loads((sub / "metrics.json").read_text()) == metrics
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.check_submission",
            "submission",
            "--prompts",
            "generated/prompts.jsonl",
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_dvc_params_list_exactly_the_keys_the_stage_read(pipeline, stage):
    root, params, _, _ = pipeline
    entries = yaml.safe_load((root / "dvc.yaml").read_text())["stages"][stage].get("params", [])
    read_not_listed, listed_not_read = params_mismatch(
        listed_keys(entries, params), read_keys(root / "trace", stage)
    )
    assert not read_not_listed, f"{stage} reads {read_not_listed} but dvc.yaml does not list them"
    assert not listed_not_read, f"dvc.yaml lists {listed_not_read} for {stage}, which never reads them"


@pytest.mark.slow
def test_a_report_styling_edit_reruns_evaluate_only(pipeline):
    """DVC deps are whole parts: the report's CSS belongs to evaluate, not to submit (or anything upstream)."""
    root, _, _, _ = pipeline
    css = root / "evaluation/report/report.css"
    before = css.read_text()
    try:
        css.write_text(before + "h1{letter-spacing:0.01em}\n")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        status = subprocess.run(
            ["dvc", "status", "--json"], cwd=root, env=env, capture_output=True, text=True, check=True
        )
        assert set(json.loads(status.stdout or "{}")) == {"evaluate"}, status.stdout
    finally:
        css.write_text(before)


def _out_hashes(root: Path) -> dict[tuple[str, str], str | None]:
    """(stage, output path) -> the content hash dvc.lock records (outs, metrics and plots alike)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {
        (stage, out["path"]): out.get("md5") for stage, entry in lock.items() for out in entry.get("outs", [])
    }


def _ran(run: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", run.stdout + run.stderr))


def _commit(root: Path, message: str) -> None:
    """What a user does after `make repro`: commit dvc.lock, DVCLive and the metrics (data stays in DVC)."""
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", message, "--allow-empty"], cwd=root, check=True)


@pytest.mark.slow
def test_a_second_copy_gives_byte_identical_outputs_and_run_facts_stay_in_records(pipeline, tmp_path_factory):
    root, _, _, _ = pipeline
    other = tmp_path_factory.mktemp("dag-again")  # another path: no absolute path or time may reach an output
    _tiny_copy(other)
    _dvc(other, "repro")
    first, second = _out_hashes(root), _out_hashes(other)
    assert len(first) >= 15 and set(first) == set(second)
    assert [out for out in first if first[out] != second[out]] == []
    assert sorted(p.stem for p in (root / "provenance").glob("*.json")) == sorted((*STAGES, "pack"))
    outputs = ("data", "models", "generated", "reports", "submission", "dvclive")
    assert not [p for folder in outputs for p in (root / folder).rglob("*provenance*")]


@pytest.mark.slow
def test_a_generation_experiment_restores_the_model_and_the_run_cache_serves_a_repeat(pipeline):
    root, params, _, _ = pipeline
    _commit(root, "make repro")
    assert list((root / "checkpoints").rglob("last.pt"))  # in the workspace only: git ignores them
    run = _dvc(root, "exp", "run", "--temp", "-S", "generate.cfg_scale=2.0", "-n", "cfg2")
    assert _ran(run) == {"generate", "evaluate", "submit"}, run.stdout[-3000:]
    # the same params in the workspace: the run cache restores the three stages instead of running them
    run = _dvc(root, "exp", "run", "-S", "generate.cfg_scale=2.0")
    cached = set(re.findall(r"Stage '(\w+)' is cached - skipping run", run.stdout + run.stderr))
    assert not _ran(run) and cached == {"generate", "evaluate", "submit"}, run.stdout[-3000:]
    # and back to the committed params: restored again, the workspace equals the commit
    run = _dvc(root, "exp", "run", "-S", f"generate.cfg_scale={params['generate']['cfg_scale']}")
    assert not _ran(run), run.stdout[-3000:]
    diff = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
    )
    assert diff.stdout == "", diff.stdout


@pytest.mark.slow
def test_an_extended_training_in_a_temporary_experiment_resumes_from_the_user_checkpoints(pipeline):
    root, _, _, _ = pipeline
    _commit(root, "before extending")
    run = _dvc(root, "exp", "run", "--temp", "-S", f"train.steps={STEPS + 2}", "-n", "longer", "train")
    assert "train" in _ran(run)
    record = json.loads((root / "provenance/exps/longer/train.json").read_text())
    assert record["resumed_from_step"] == STEPS and record["steps"] == STEPS + 2
    assert Path(record["checkpoints"]).parent == root / "checkpoints"  # the user's, not the temporary copy's


@pytest.mark.slow
def test_an_encode_rerun_with_unchanged_code_does_not_cascade(pipeline):
    root, _, _, _ = pipeline
    base = root / "model/codec/base.py"
    before = base.read_text()
    try:
        base.write_text(before + "# a comment: encode reruns, its shards stay the same\n")
        run = _dvc(root, "repro")
        # generate and evaluate run the codec too; their outputs come out the same, so submit does not rerun
        assert _ran(run) == {"encode", "generate", "evaluate"}, run.stdout[-3000:]
    finally:
        base.write_text(before)
    # back to the committed code: the stages that ran with the comment come back from DVC's run cache
    back = _dvc(root, "repro")
    assert not _ran(back) & {"generate", "evaluate", "submit"}, back.stdout[-3000:]
    # a real re-encode of every shard (none kept from before), forced, with the code as committed
    shutil.rmtree(root / "data/latents/shards")
    _dvc(root, "repro", "-f", "-s", "encode")
    status = _dvc(root, "status", "--json")
    assert json.loads(status.stdout or "{}") == {}, status.stdout
