"""`make gpu-check --dry-run` equivalent: every section of bench/gpu_check.py on CPU with tiny sizes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_runs_every_section_and_writes_the_report(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--dry-run", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert report["dry_run"] and set(checks) == {
        "pytest",
        "parity",
        "train",
        "generate",
        "dcae",
        "demucs",
        "ddp",
    }
    assert all("error" not in r for r in checks.values()), {k: r.get("error") for k, r in checks.items()}
    assert "tests collected" in checks["pytest"]["summary"]
    assert checks["parity"]["float32"]["max_rel_error"] < 1e-3
    assert checks["train"]["torch"]["steps_per_s"] > 0 and checks["train"]["torch"]["batch"] == 2
    assert checks["generate"]["frames"] == 8 and checks["generate"]["2_steps_s"] > 0
    assert checks["dcae"]["x_real_time"] > 0 and checks["demucs"]["x_real_time"] > 0
    assert len(set(checks["ddp"]["digests"])) == 1
    for name in checks:  # the printed table has one row per section
        assert any(line.strip().startswith(name) for line in done.stdout.splitlines()), name


def test_gpu_check_refuses_to_run_the_real_check_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the real check would run")
    done = subprocess.run(
        [sys.executable, "bench/gpu_check.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert done.returncode == 2 and "--dry-run" in done.stderr
