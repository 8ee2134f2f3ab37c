"""bench/gpu_check.py --dry-run: every section on CPU with tiny sizes, run with nothing importable but the standard
library, torch and its own requirements, Triton (with numpy for its CPU interpreter), flowjam's own code and the
pure-Python wheels docs/gpu.md lists for the pytest section: what a bare GPU machine's Python has (``python -S``
with only those packages on the path). The audio sections need the project's environment: there they skip with
the reason; they run in the venv (second test)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

# What a bare GPU machine's Python has: torch and its own requirements (its wheel's Requires-Dist; the CUDA
# ones do not exist on CPU), Triton (numpy only for Triton's CPU interpreter, i.e. the dry run), and the wheels of
# docs/gpu.md's `pip download` line (pytest and its requirements). Nothing else of the venv is visible.
BARE = (
    "torch", "torchgen", "functorch", "filelock", "typing_extensions.py", "setuptools", "_distutils_hack",
    "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "fsspec", "cuda", "nvidia",
    "triton", "numpy", "numpy.libs",
    "pytest", "_pytest", "py.py", "pluggy", "iniconfig", "packaging", "pygments",
)  # fmt: skip


def bare_site(tmp_path: Path) -> Path:
    """A directory holding links to just the BARE packages of this venv's site-packages."""
    site_packages = Path(torch.__file__).resolve().parents[1]
    site = tmp_path / "bare-site"
    site.mkdir()
    for name in BARE:
        if (site_packages / name).exists():
            (site / name).symlink_to(site_packages / name)
    return site


def _run(tmp_path, *args, bare=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    flags = []
    if bare:  # -S: no site-packages (the child processes inherit the flag), only the bare site and the repo
        flags = ["-S"]
        env["PYTHONPATH"] = f"{bare_site(tmp_path)}{os.pathsep}{ROOT}"
    return subprocess.run(
        [sys.executable, *flags, "bench/gpu_check.py", "--dry-run", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_dry_run_passes_with_only_a_bare_gpu_machines_packages(tmp_path):
    out = tmp_path / "gpu.json"
    done = _run(tmp_path, "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    blocked = (
        (tmp_path / "blocked.tsv").read_text().splitlines() if (tmp_path / "blocked.tsv").exists() else []
    )
    ours = [line for line in blocked if str(ROOT) in line.split("\t")[1] and "/.venv/" not in line]
    # only the audio sections reach for the project's environment, and they say so and skip
    assert all("gpu_check_audio.py" in line for line in ours), ours
    assert any(line.startswith("pydantic") or line.startswith("diffusers") for line in blocked) or not ours
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert report["dry_run"] and {"device", "torch", "cuda", "triton"} <= set(report)
    assert report["triton"] == report["versions"]["triton"] and not report["triton"].startswith("not")
    assert list(checks) == [
        "backends",
        "parity",
        "train",
        "max_batch",
        "generate",
        "pytest",
        "dcae",
        "demucs",
        "ddp",
    ]
    assert {n: r for n, r in checks.items() if "error" in r} == {}
    assert "tests collected" in checks["pytest"]["summary"]
    assert checks["backends"]["auto"]["backend"] == "torch" and checks["backends"]["triton"]["usable"]
    assert checks["parity"]["triton"]["float32"]["max_rel_error"] < 1e-3
    assert checks["parity"]["triton"]["bfloat16"]["max_rel_error"] < 5e-2
    assert set(checks["train"]) >= {"triton", "torch"} and checks["train"]["triton"]["ran"] == "triton"
    assert checks["train"]["torch"]["steps_per_s"] > 0 and checks["train"]["batch"] == 2
    assert checks["max_batch"]["largest_fitting_batch"] == 6  # the dry run's fake capacity
    assert checks["max_batch"]["tried"]["8"] == "OOM"
    assert (
        checks["generate"]["paper"]["method"] == "euler"
        and checks["generate"]["paper"]["precision"] == "bf16"
    )
    assert checks["generate"]["default"]["method"] == "euler" and checks["generate"]["default"]["seconds"] > 0
    assert "skipped" in checks["dcae"] and "skipped" in checks["demucs"]
    assert len(set(checks["ddp"]["digests"])) == 1
    for name in checks:  # the printed table has one row per section
        assert any(line.strip().startswith(name) for line in done.stdout.splitlines()), name


def test_audio_sections_run_in_the_projects_environment(tmp_path):
    out = tmp_path / "gpu.json"
    done = _run(tmp_path, "--only", "dcae", "demucs", "--out", str(out), bare=False)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = json.loads(out.read_text())["checks"]
    assert checks["dcae"]["x_real_time"] > 0 and checks["demucs"]["x_real_time"] > 0


def test_the_timed_generation_settings_are_the_stages():
    from gpu_check_setup import DEFAULT_GENERATE, PAPER_GENERATE

    from pipelines.common.schema import GenerateSection
    from pipelines.profile import load_profile, merge

    defaults = GenerateSection()
    assert (DEFAULT_GENERATE.method, DEFAULT_GENERATE.steps, DEFAULT_GENERATE.cfg_scale) == (
        defaults.method,
        defaults.steps,
        defaults.cfg_scale,
    )
    assert DEFAULT_GENERATE.precision == defaults.precision
    paper = merge(
        yaml.safe_load((ROOT / "params.yaml").read_text()), load_profile("paper", ROOT / "profiles")
    )
    assert vars(PAPER_GENERATE) == {
        k: paper["generate"][k] for k in ("method", "steps", "cfg_scale", "precision")
    }


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
