"""The whole DAG chained: ``dvc repro`` of every stage in a temporary copy of the repository on a tiny config.

Real stages, real offline components (synthetic data, mel codec, the packaged all-MiniLM-L6-v2 text encoder,
spectral embedder, trained tagger), a few training steps. Checks what each stage hands to the next, that DVC sees
the pipeline as up to date afterwards, and — through the params trace (``pipelines/common/params_trace.py``) —
that every stage's ``params:`` in dvc.yaml lists exactly the keys the stage read, so ``dvc exp run -S`` reruns the
right stages.
"""

from __future__ import annotations

import io
import json
import os
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
    subprocess.run([*git, "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dst, check=True)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("dag")
    _copy_repository(root)
    params = _deep_update(yaml.safe_load((root / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(root),
        TRACE_ENV: str(root / "trace"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    env.pop("RAY_ADDRESS", None)
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
            "provenance.json",
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
