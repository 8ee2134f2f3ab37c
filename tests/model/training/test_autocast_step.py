"""Training and validation under bf16 autocast, with the mixers calling a stand-in for mamba_ssm's kernel.

The stand-in (tests/model/network/kernel_contract.py) refuses what the CUDA kernel refuses, so the paper
profile's first step on a GPU (bf16 autocast, scan_backend auto -> cuda) is exercised here on CPU.
"""

import pytest
import torch

from model.training import loop as trainer_module
from model.training.loop import Trainer
from model.training.setup import run_training
from pipelines.train import train_job
from tests import defaults
from tests.model.network.kernel_contract import install_stand_in
from tests.model.training.fixtures import HashTextEncoder, run_checkpoints, tiny_params, write_fixture_shards


@pytest.fixture
def bf16_on_cpu(monkeypatch):
    monkeypatch.setattr(trainer_module, "AUTOCAST_DEVICE_TYPES", ("cuda", "cpu"))


def _params(root, **train):
    params = tiny_params(root, **{"steps": 2, "val_every": 2, "ckpt_every": 2, "log_every": 1, **train})
    params["model"].update(scan_backend="auto", d_conv=4, hidden=16, d_state=4)
    return train_job(defaults.params(params))


def test_training_and_validation_steps_under_autocast_meet_the_kernel_contract(
    tmp_path, monkeypatch, bf16_on_cpu
):
    stand_in = install_stand_in(monkeypatch)
    seen = {}
    real_loss = Trainer.validation_loss

    def validation_loss(self, flow):
        before = stand_in.calls
        value = real_loss(self, flow)
        seen.setdefault("val_calls", []).append(stand_in.calls - before)
        return value

    monkeypatch.setattr(Trainer, "validation_loss", validation_loss)
    write_fixture_shards(tmp_path)
    result = run_training(
        _params(tmp_path), live_dir=str(tmp_path / "dvclive"), text_encoder=HashTextEncoder()
    )
    assert result.step == 2 and result.nan_skipped == 0
    # 2 mixers per block; every training forward went through the kernel seam and its backward too
    assert stand_in.backward_calls >= 2 * 2
    assert seen["val_calls"] and all(n > 0 for n in seen["val_calls"])  # validation used the kernel as well
    assert result.first_val_loss is not None and result.last_val_loss is not None
    state = torch.load(run_checkpoints(tmp_path) / "last.pt", weights_only=False)
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert all(t.dtype == torch.float32 for t in state["model"].values())  # master weights stay fp32


def test_autocast_step_changes_every_parameter(tmp_path, monkeypatch, bf16_on_cpu):
    install_stand_in(monkeypatch)
    write_fixture_shards(tmp_path)
    captured = {}
    real_init = Trainer.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        captured["trainer"] = self
        captured["before"] = {k: v.clone() for k, v in self.net.state_dict().items()}

    monkeypatch.setattr(Trainer, "__init__", init)
    run_training(
        _params(tmp_path, val_every=100), live_dir=str(tmp_path / "dvclive"), text_encoder=HashTextEncoder()
    )
    after = captured["trainer"].net.state_dict()
    unchanged = [k for k, v in captured["before"].items() if torch.equal(v, after[k])]
    assert unchanged == []
