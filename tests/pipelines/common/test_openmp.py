"""The train stage sets OpenMP's wait policy before anything loads torch (libgomp reads it only then)."""

import os
import subprocess
import sys

from tests.conftest import REPO

# imports the stage module and prints OMP_WAIT_POLICY at the moment something first imports torch (then stops)
PROBE = """
import importlib.abc, os, sys
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print(os.environ.get("OMP_WAIT_POLICY"), flush=True)
            os._exit(0)
        return None
sys.meta_path.insert(0, Watch())
import pipelines.train
print("torch never imported")
"""


def run_probe(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**base, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return out.stdout.strip().splitlines()[-1]


def test_train_stage_sets_passive_wait_policy_before_torch_loads():
    assert run_probe() == "PASSIVE"


def test_a_wait_policy_from_the_environment_wins():
    assert run_probe(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
