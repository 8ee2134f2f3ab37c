"""The model picker on a real DVC repository: the model given at start plus the experiments of ``dvc exp show``
whose model is in the local cache, each with its headline metrics; a picked experiment's model loads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from model.flow.trained import load_trained
from pipelines.studio.models import headline, list_models, materialise
from tests.pipelines.conftest import build_tiny_model

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
# the "train" stage copies a prepared model (params: which one) and writes that model's metrics
STAGE = """import json, shutil, sys, yaml
p = yaml.safe_load(open("params.yaml"))["train"]
shutil.copytree(p["source"], p["out_dir"], dirs_exist_ok=True)
json.dump({"fad": p["fad"], "clap": 0.25, "ccs": 0.5, "first_seed": {"fad": 9.0}}, open("reports/metrics.json", "w"))
"""


def _run(cmd, cwd, env=None):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-1500:]}{done.stderr[-1500:]}"
    return done.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git + DVC repository with a baseline and two experiments, each exporting a different model."""
    root = tmp_path_factory.mktemp("dvc_repo")
    sources = tmp_path_factory.mktemp("sources")
    for name, depth in (("a", 1), ("b", 2)):
        build_tiny_model(sources / name)
        cfg = json.loads((sources / name / "config.json").read_text())
        cfg["steps"] = depth  # tells the two models apart
        (sources / name / "config.json").write_text(json.dumps(cfg))
    (root / "make_model.py").write_text(STAGE)
    (root / "reports").mkdir()
    params = {"train": {"source": str(sources / "a"), "out_dir": "models/final", "fad": 3.0}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    stage = {
        "cmd": f"{sys.executable} make_model.py",
        "deps": ["make_model.py"],
        "params": ["train"],
        "outs": ["models/final"],
        "metrics": [{"reports/metrics.json": {"cache": False}}],
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": stage}}))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    _run(["git", "init", "-q"], root)
    _run([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    _run([*GIT, "add", "-A"], root)
    _run([*GIT, "commit", "-qm", "init"], root)
    _run([sys.executable, "-m", "dvc", "repro", "-q"], root, env)
    _run([*GIT, "add", "-A"], root)
    _run([*GIT, "commit", "-qm", "baseline"], root)
    exp = [sys.executable, "-m", "dvc", "exp", "run", "-q"]
    _run([*exp, "-n", "deeper", "-S", f"train.source={sources / 'b'}", "-S", "train.fad=2.0"], root, env)
    same = ["-S", f"train.source={sources / 'a'}", "-S", "train.fad=3.0"]  # -S edits params.yaml: set both
    _run([*exp, "-n", "same-model", *same], root, env)  # the baseline's model again, left in the workspace
    return root


def test_picker_lists_the_workspace_model_and_each_cached_experiment_once(repo, tmp_path):
    choices = list_models(repo / "models" / "final", repo)
    labels = [c.label for c in choices]
    assert labels[0] == "models/final (this workspace)" and choices[0].metrics == headline(
        json.loads((repo / "reports" / "metrics.json").read_text())
    )
    exps = {c.label.split(" (")[0]: c for c in choices[1:]}
    assert set(exps) == {"exp deeper"}, labels  # the baseline and same-model export the workspace's model
    deeper = exps["exp deeper"]
    assert deeper.metrics == {"fad": 2.0, "clap": 0.25, "ccs": 0.5}
    assert deeper.describe().endswith("FAD 2.000, CLAP 0.250, CCS 0.500")

    model_dir = materialise(deeper, tmp_path / "models")
    assert load_trained(model_dir).steps == 2 and load_trained(materialise(choices[0], tmp_path)).steps == 1
    assert materialise(deeper, tmp_path / "models") == model_dir  # linked once, reused

    # a model whose files left the cache is not offered (it could not be loaded without a pull)
    shutil.rmtree(repo / ".dvc" / "cache")
    assert [c.label for c in list_models(repo / "models" / "final", repo)] == [labels[0]]


def test_outside_a_dvc_repository_only_the_given_model_is_listed(tmp_path):
    model = build_tiny_model(tmp_path / "m")
    (choice,) = list_models(model, tmp_path / "elsewhere")
    assert (
        choice.path == model.resolve() and choice.metrics == {} and choice.describe().endswith("no metrics")
    )
