"""dvc.yaml: the prepare stage depends on the folder ``data.folder.root`` names (a templated dep), so a
``dvc exp run -S data.folder.root=...`` records the folder's content and a changed file makes prepare stale."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from tests.test_chained_dag import _copy_repository


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(root)}
    dvc = shutil.which("dvc", path=env["PATH"]) or "dvc"
    return subprocess.run([dvc, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_exp_run_records_the_folder_and_notices_a_new_file(tmp_path):
    repo, music = tmp_path / "repo", tmp_path / "elsewhere" / "music"
    repo.mkdir()
    _copy_repository(repo)
    music.mkdir(parents=True)
    t = np.arange(44100 * 2) / 44100
    for i in range(3):
        sf.write(str(music / f"t{i}.wav"), 0.2 * np.sin(2 * np.pi * (200 + 100 * i) * t), 44100)
    (music / "captions.csv").write_text("path,caption\nt0.wav,A.\nt1.wav,B.\nt2.wav,C.\n")
    sets = ["-S", "data.source=folder", "-S", f"data.folder.root={music}"]
    run = _dvc(repo, "exp", "run", "prepare", *sets, "-S", "data.folder.test_share=0.0")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    deps = {
        d["path"]: d for d in yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["prepare"]["deps"]
    }
    assert deps[str(music)]["nfiles"] == 4 and deps[str(music)]["md5"].endswith(".dir")
    assert json.loads(_dvc(repo, "status", "--json", "prepare").stdout) == {}
    sf.write(str(music / "t3.wav"), 0.2 * np.sin(2 * np.pi * 700 * t), 44100)
    with (music / "captions.csv").open("a") as fh:
        fh.write("t3.wav,D.\n")
    status = json.loads(_dvc(repo, "status", "--json", "prepare").stdout)
    assert status == {"prepare": [{"changed deps": {str(music): "modified"}}]}
