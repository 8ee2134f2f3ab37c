"""One studio server for the studio tests: ``python -m pipelines.studio`` in a subprocess on a free loopback port,
serving the tiny trained-model fixture, one render at a time (so the queue order is observable)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pipelines.conftest import build_tiny_model

ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 180


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    model_dir: Path
    out_dir: Path
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env() -> dict[str, str]:
    """The environment of a command a user types: this checkout first, no thread settings of the test process."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="package")
def studio_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("studio_model"))


@pytest.fixture(scope="package")
def server(tmp_path_factory, studio_model):
    work = tmp_path_factory.mktemp("studio_server")
    port = free_port()
    log = work / "server.log"
    env = {
        **cli_env(),
        "GRADIO_TEMP_DIR": str(work / "gradio"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    cmd = [sys.executable, "-m", "pipelines.studio", "--model-dir", str(studio_model), "--port", str(port)]
    cmd += [
        "--concurrency",
        "1",
        "--device",
        "cpu",
        "--out-dir",
        str(work / "takes"),
        "--params",
        "absent.yaml",
    ]
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the studio exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as page:
                    if page.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the studio did not serve {url} in {START_TIMEOUT_S} s:\n{log.read_text()}"
                )
            time.sleep(0.5)
        yield Server(url, proc.pid, studio_model, work / "takes", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
