"""separate, encode and a 2-worker train on a real two-node Ray cluster (loopback, started here), reached through
RAY_ADDRESS: every output equals that of a local run.

The cluster is private to this module: its own free ports and temp dir; teardown ends only the processes whose
command line names that temp dir (``ray stop`` would stop every Ray on the machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
import torch
import yaml
from safetensors.torch import load_file

from pipelines import pack, separate, stats
from tests.model.separation.test_vocal_remover import save_local_repo, stereo, tiny_htdemucs
from tests.model.training.fixtures import TINY_MODEL, tiny_params, write_fixture_shards
from tests.pipelines.test_encode import CODEC, shard_rows

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"
pytestmark = pytest.mark.slow
# the test cluster runs without token authentication; every driver that joins it must say so too (a ray.init
# elsewhere in this process sets RAY_AUTH_MODE=token in os.environ, which subprocesses would inherit)
CLUSTER_AUTH = "disabled"


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def node_ports() -> list[str]:
    names = (
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
    )
    return [f"{name}={port}" for name, port in zip(names, free_ports(len(names)), strict=True)]


def processes_of(temp_dir: str) -> list[int]:
    """This user's processes whose command line names ``temp_dir`` (every process of that Ray cluster does)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid == os.getuid() and temp_dir.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return found


def end_processes_of(temp_dir: str) -> None:
    """SIGTERM, then after 10 s SIGKILL, the processes of the cluster in ``temp_dir``, by their ids."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_of(temp_dir):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while processes_of(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.2)


def ray_start(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node on 127.0.0.1, one CPU each; yields the address for RAY_ADDRESS."""
    temp_dir = tempfile.mkdtemp(prefix="fjray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    gcs_port, dashboard_port = free_ports(2)
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": CLUSTER_AUTH,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
    }  # conftest sets 0 (loopback-only private instances); nodes join here
    env.pop("RAY_ADDRESS", None)
    common = [
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--num-gpus=0",
        f"--temp-dir={temp_dir}",
        "--object-store-memory=120000000",
        "--disable-usage-stats",
    ]
    address = f"127.0.0.1:{gcs_port}"
    try:
        ray_start(
            [
                RAY,
                "start",
                "--head",
                f"--port={gcs_port}",
                "--include-dashboard=false",
                f"--dashboard-port={dashboard_port}",
                *common,
                *node_ports(),
            ],
            env,
        )
        ray_start([RAY, "start", f"--address={address}", *common, *node_ports()], env)
        yield address
    finally:
        end_processes_of(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def write_inputs(root: Path, weights_dir: Path) -> Path:
    """Three 1.5 s stereo tracks (two train, one validation) and a params file for separate -> encode -> train."""
    audio = root / "audio"
    audio.mkdir(parents=True)
    ids = [f"track_{i:07d}" for i in range(3)]
    for i, track in enumerate(ids):
        sf.write(audio / f"{track}.wav", stereo(1.5, seed=i).T, 44100)
    prepared = root / "prepared"
    prepared.mkdir()
    pl.DataFrame(
        {
            "track_id": ids,
            "audio_path": [str(audio / f"{t}.wav") for t in ids],
            "caption": ["calm piano", "fast rock drums", "calm piano"],
            "split": ["train", "train", "validation"],
            "genre": [["rock"]] * 3,
            "instrument": [["piano"]] * 3,
            "mood": [["calm"]] * 3,
        }
    ).write_parquet(prepared / "tracks.parquet")
    params = {
        "data": {"prepared_dir": str(prepared)},
        "separate": {
            "model": "tinyht",
            "weights_dir": str(weights_dir),
            "segment": 4.0,
            "overlap": 0.25,
            "shifts": 0,
            "block_seconds": 9.0,
            "device": "cpu",
            "workers": 2,
            "audio_format": "flac",
            "out_dir": str(root / "instrumental"),
        },
        "codec": CODEC,
        "encode": {
            "clip_seconds": 1.0,
            "hop_seconds": 1.0,
            "max_clips_per_track": 1,
            "min_clip_seconds": 0.5,
            "shard_rows": 2,
            "batch_size": 1,
            "workers": 2,
            "out_dir": str(root / "shards"),
            "stats_path": str(root / "stats.json"),
        },
        "pack": {"out_dir": str(root / "store")},
        "text": {"encoder": "minilm", "path": "", "max_length": 16},
        "model": dict(TINY_MODEL),
        "train": {
            "steps": 4,
            "batch_size": 1,
            "frames": 32,
            "lr": 3e-3,
            "warmup": 1,
            "ema_decay": 0.9,
            "val_every": 4,
            "ckpt_every": 2,
            "keep": 2,
            "log_every": 2,
            "seed": 0,
            "workers": 2,
            "ckpt_dir": str(root / "checkpoints"),
            "out_dir": str(root / "final"),
        },
        "ray": {"address": "", "storage": str(root / "ray-storage")},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root / "params.yaml"


TRAIN = """
import sys
from model.training.ray_train import run_ray_training
from pipelines.common.params import load_params
from pipelines.train import train_job
from tests.model.training.fixtures import HashTextEncoder
params = load_params(sys.argv[1])
run_ray_training(train_job(params), storage_dir=params.ray.storage, live_dir=sys.argv[2],
                 text_encoder=HashTextEncoder())
"""


def run_recipe(root: Path, weights_dir: Path, ray_address: str | None) -> None:
    """separate -> encode -> stats -> pack -> 2-worker train, each stage its own process (as `dvc repro` runs them),
    on the cluster at ``ray_address`` (through RAY_ADDRESS) or on private local Ray instances."""
    params = str(write_inputs(root, weights_dir))
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)  # a ray.init earlier in this process sets it
    if ray_address:
        env.update(RAY_ADDRESS=ray_address, RAY_AUTH_MODE=CLUSTER_AUTH)
    if ray_address:
        run([sys.executable, "-m", "pipelines.separate", "--params", params], env, root)
    else:  # the local reference: one in-process worker
        _separate_in_process(params)
    run([sys.executable, "-m", "pipelines.encode", "--params", params], env, root)
    stats.main(["--params", params])  # no Ray in these two
    pack.main(["--params", params])
    run([sys.executable, "-c", TRAIN, params, str(root / "dvclive")], env, root)


def _separate_in_process(params: str) -> None:
    local = yaml.safe_load(Path(params).read_text())
    local["separate"]["workers"] = 1
    Path(params).write_text(yaml.safe_dump(local))
    separate.main(["--params", params])


def run(command: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command[:4]} failed:\n{done.stderr[-4000:]}"


def test_separate_encode_and_train_on_a_two_node_cluster_equal_a_local_run(tmp_path, cluster):
    weights = tmp_path / "demucs"
    weights.mkdir()
    save_local_repo(tiny_htdemucs(), weights)
    run_recipe(tmp_path / "local", weights, None)
    run_recipe(tmp_path / "cluster", weights, cluster)
    local, remote = tmp_path / "local", tmp_path / "cluster"
    ml, mr = (pl.read_parquet(r / "instrumental" / "manifest.parquet") for r in (local, remote))
    assert ml["track_id"].to_list() == mr["track_id"].to_list() and len(ml) == 3
    for a, b in zip(ml["path"], mr["path"], strict=True):
        assert Path(b).parent == remote / "instrumental" / "audio"
        np.testing.assert_allclose(sf.read(a)[0], sf.read(b)[0], atol=1e-6)
    assert shard_rows(remote / "shards") == shard_rows(local / "shards")
    wl, wr = (
        load_file(local / "final" / "model.safetensors"),
        load_file(remote / "final" / "model.safetensors"),
    )
    assert wl.keys() == wr.keys() and all(torch.equal(wl[k], wr[k]) for k in wl)
    assert (remote / "dvclive" / "metrics.json").exists()


def test_a_multi_node_cluster_without_shared_storage_is_refused_before_any_work(tmp_path, cluster):
    write_fixture_shards(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params(tmp_path, workers=2)))
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "RAY_ADDRESS": cluster,
        "RAY_AUTH_MODE": CLUSTER_AUTH,
    }
    script = (
        "import sys\nfrom model.training.ray_train import run_ray_training\n"
        "from pipelines.common.params import load_params\nfrom pipelines.train import train_job\n"
        "run_ray_training(train_job(load_params(sys.argv[1])), storage_dir='')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(params)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "ray.storage is empty but the Ray cluster has 2 nodes" in done.stderr
