"""`python -m pipelines.rank` on real `dvc exp show --json` output: a tiny git + DVC repository with a one-stage
pipeline that writes a metrics file, and two experiments run with `dvc exp run -S`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.rank import experiments_from_exp_show, main
from tests.cli import user_error

REPO = Path(__file__).resolve().parents[2]
STAGE = """import json, os, yaml
q = yaml.safe_load(open("params.yaml"))["q"]
os.makedirs("reports", exist_ok=True)
json.dump({"fad": q, "clap": 1.0 / q, "ccs": 0.5, "ccs_margin": 0.1}, open("reports/metrics.json", "w"))
"""
DVC_YAML = """stages:
  score:
    cmd: python stage.py
    deps: [stage.py]
    params: [q]
    metrics:
      - reports/metrics.json:
          cache: false
"""


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    """Baseline q = 1 committed, then experiments `two` (q = 2) and `half` (q = 0.5, left in the workspace)."""
    root = tmp_path_factory.mktemp("exp")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    (root / "params.yaml").write_text("q: 1.0\n")
    (root / "stage.py").write_text(STAGE)
    (root / "dvc.yaml").write_text(DVC_YAML)

    def run(*cmd):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True, text=True, timeout=120)

    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    run("git", "-c", "init.defaultBranch=main", "init", "-q")
    run(shutil.which("dvc", path=env["PATH"]) or "dvc", "init", "-q")
    run("dvc", "repro", "-q")
    run(*git, "add", "-A")
    run(*git, "commit", "-qm", "baseline")
    for value, name in (("2", "two"), ("0.5", "half")):
        subprocess.run(
            ["dvc", "exp", "run", "-q", "-S", f"q={value}", "-n", name],
            cwd=root,
            env={**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@l", "GIT_COMMITTER_NAME": "t",
                 "GIT_COMMITTER_EMAIL": "t@l"},
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
    return root, env


@pytest.mark.slow
def test_rank_reads_the_workspace_and_every_experiment_of_dvc_exp_show(experiments):
    root, env = experiments
    run = subprocess.run(
        [sys.executable, "-m", "pipelines.rank", "--metrics-file", "reports/metrics.json"],
        cwd=root,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    ranking = json.loads((root / "reports" / "ranking.json").read_text())
    by_name = {e["name"]: e for e in ranking["experiments"]}
    assert set(by_name) == {"workspace", "main", "two", "half"}
    # fad = q, clap = 1/q, ccs equal: half and the workspace (which holds half's result) tie for first
    assert (
        by_name["half"]["rank"],
        by_name["workspace"]["rank"],
        by_name["main"]["rank"],
        by_name["two"]["rank"],
    ) == (
        1,
        1,
        3,
        4,
    )
    assert by_name["half"]["points"] == {"fad": 2.5, "clap": 2.5, "ccs": 1.5}
    assert by_name["two"]["values"] == {"fad": 2.0, "clap": 0.5, "ccs": 0.5}
    assert len(by_name["two"]["rev"]) == 40 and by_name["workspace"]["rev"] == ""
    assert [line.split()[1] for line in lines[2:]] == [e["name"] for e in ranking["experiments"]]


def test_saved_exp_show_output_and_entries_without_metrics(tmp_path, capsys):
    rows = [
        {"rev": "workspace", "name": None, "data": {"metrics": {}}, "error": None, "experiments": None},
        {
            "rev": "a" * 40,
            "name": "main",
            "data": {"metrics": {"reports/metrics.json": {"data": {"fad": 3.0, "clap": 0.2, "ccs": 0.5}}}},
            "error": None,
            "experiments": [
                {
                    "name": "broken",
                    "revs": [{"rev": "b" * 40, "name": "broken", "data": {}, "error": {"msg": "x"}}],
                },
                {
                    "name": "good",
                    "revs": [
                        {
                            "rev": "c" * 40,
                            "name": "good",
                            "data": {
                                "metrics": {"reports/metrics.json": {"data": {"fad": 1.0, "clap": 0.3}}}
                            },
                        }
                    ],
                },
            ],
        },
    ]
    found = experiments_from_exp_show(rows, "reports/metrics.json")
    assert [(e.name, dict(e.values)) for e in found] == [
        ("workspace", {}),
        ("main", {"fad": 3.0, "clap": 0.2, "ccs": 0.5}),
        ("broken", {}),
        ("good", {"fad": 1.0, "clap": 0.3}),
    ]
    (tmp_path / "show.json").write_text(json.dumps(rows))
    out = tmp_path / "ranking.json"
    main(
        [
            "--exp-show",
            str(tmp_path / "show.json"),
            "--out",
            str(out),
            "--params",
            str(tmp_path / "none.yaml"),
        ]
    )
    table = capsys.readouterr().out
    assert "good" in table and "not ranked" in table
    ranking = json.loads(out.read_text())
    assert [e["name"] for e in ranking["experiments"]] == ["good", "main"]
    assert set(ranking["unranked"]) == {"workspace", "broken"}
    (tmp_path / "bad.json").write_text("{")
    assert "--exp-show" in user_error(capsys, main, ["--exp-show", str(tmp_path / "bad.json")])
