"""A Ray Train worker killed mid-run: Ray restarts the workers, they resume from the last reported checkpoint,
and the trained weights equal those of an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import ray
import torch
from ray.train.v2._internal.constants import DEFAULT_HEALTH_CHECK_INTERVAL_S
from safetensors.torch import load_file

from model.training.ray_train import RayTrainer, run_ray_training
from tests.model.training.fixtures import HashTextEncoder, run_checkpoints, tiny_job, write_fixture_shards

REPO = Path(__file__).resolve().parents[3]
DIE_AFTER_STEP = 6  # between the checkpoints at steps 4 and 8


class DyingTrainer(RayTrainer):
    """Rank 1 kills its own process with SIGKILL right after step 6, once (a marker file remembers it), after
    deleting the local checkpoint directory, as if it had been on a lost node: the resume must come from the
    checkpoint reported to Ray Train."""

    def train_step(self):
        out = super().train_step()
        if self.dist.rank == 0:  # which steps were trained, in order, across the restart
            with (Path(self.cfg.out_dir).parent / "steps.txt").open("a") as log:
                log.write(f"{self.step + 1}\n")
        marker = Path(self.cfg.out_dir).parent / "killed-worker.pid"
        if self.dist.rank == 1 and self.step + 1 == DIE_AFTER_STEP and not marker.exists():
            marker.write_text(str(os.getpid()))
            # Ray Train takes in a reported checkpoint at its next poll of the workers (every 2 s): wait for it
            time.sleep(3 * DEFAULT_HEALTH_CHECK_INTERVAL_S)
            shutil.rmtree(self.ckpt.dir)
            os.kill(os.getpid(), signal.SIGKILL)
        return out


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=300 * 1024**2,
        runtime_env={"env_vars": {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}},
    )
    yield
    ray.shutdown()


def train(root: Path, trainer_cls) -> dict[str, torch.Tensor]:
    write_fixture_shards(root)
    run_ray_training(
        tiny_job(root, steps=8, ckpt_every=4, val_every=8, workers=2, batch_size=2),
        storage_dir=root / "ray",
        live_dir=str(root / "dvclive"),
        text_encoder=HashTextEncoder(),
        trainer_cls=trainer_cls,
    )
    return torch.load(run_checkpoints(root) / "last.pt", weights_only=False)


def same(a, b) -> bool:
    """Nested state dicts equal bit for bit."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


@pytest.mark.slow
def test_killed_worker_resumes_from_the_last_checkpoint_and_matches_an_uninterrupted_run(
    tmp_path, local_ray, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    straight = train(tmp_path / "straight", RayTrainer)
    resumed = train(tmp_path / "killed", DyingTrainer)
    assert (tmp_path / "killed" / "killed-worker.pid").exists()  # a worker really died mid-run
    # ... and the new workers went on from the checkpoint at step 4, not from scratch
    assert (tmp_path / "killed" / "steps.txt").read_text().split() == "1 2 3 4 5 6 5 6 7 8".split()
    assert straight["step"] == resumed["step"] == 8
    for part in ("model", "ema", "optimizer"):
        assert same(straight[part], resumed[part]), part
    assert [r["sampler"] for r in straight["ranks"]] == [r["sampler"] for r in resumed["ranks"]]
    a, b = (
        load_file(tmp_path / "straight" / "final" / "model.safetensors"),
        load_file(tmp_path / "killed" / "final" / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
