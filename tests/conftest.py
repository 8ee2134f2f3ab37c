import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Ray binds a private local instance to the machine's address unless multi-node support is off; with it off the
# instances the tests start (here and in stage subprocesses) listen on 127.0.0.1 only. The two-node cluster test
# turns it back on for its own `ray start` processes, which use --node-ip-address 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Without a GPU the Triton scan's tests run its kernels in Triton's CPU interpreter. triton fixes the mode of every
# @triton.jit function (its own tl.zeros included) when it is first imported, so it must be set before anything
# in the session imports triton; nothing else here uses triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
RECORDS_ENV = "FLOWJAM_PROVENANCE_DIR"  # pipelines.common.provenance.RECORDS_ENV


@pytest.fixture(autouse=True, scope="session")
def _records_outside_the_checkout(tmp_path_factory):
    """Stages that tests run in-process write their run records into a session folder, not the checkout."""
    old = os.environ.get(RECORDS_ENV)
    os.environ[RECORDS_ENV] = str(tmp_path_factory.mktemp("provenance"))
    yield
    if old is None:
        os.environ.pop(RECORDS_ENV, None)
    else:
        os.environ[RECORDS_ENV] = old


@pytest.fixture
def run_records(tmp_path, monkeypatch) -> Path:
    """This test's own run-record folder (``pipelines.common.provenance``)."""
    folder = tmp_path / "provenance"
    monkeypatch.setenv(RECORDS_ENV, str(folder))
    return folder


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray for the whole test session (starting one costs seconds); stage code reuses a running Ray.

    Workers import this checkout (PYTHONPATH), not whatever copy of the package the venv has installed.
    """
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        path = f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=300 * 1024**2,
            ignore_reinit_error=True,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
    yield ray
    if started:
        ray.shutdown()
