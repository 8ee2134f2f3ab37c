import csv
import dataclasses
import json

import pytest
import torch

from model.flow.trained import load_trained
from model.network.backbone import VelocityNet
from model.training import loop as trainer_module
from model.training.data import TrainBatches
from model.training.ema import EMA
from model.training.loop import Trainer
from model.training.optimizer import build_scheduler, param_groups, warmup_cosine
from model.training.setup import run_training
from tests.defaults import net_config
from tests.model.training.fixtures import (
    TINY_MODEL,
    HashTextEncoder,
    run_checkpoints,
    run_killed_at,
    tiny_job,
    write_fixture_shards,
)


def tsv_rows(live_dir, name):
    with open(live_dir / "plots" / "metrics" / f"{name}.tsv") as fh:
        return list(csv.reader(fh, delimiter="\t"))


def test_resume_after_kill_equals_uninterrupted(tmp_path, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for root in (straight, resumed):
        write_fixture_shards(root)
    run_training(tiny_job(straight), live_dir=str(straight / "dvclive"), text_encoder=HashTextEncoder())

    # killed two steps past the step-10 checkpoint: their work is lost
    run_killed_at(monkeypatch, 12, tiny_job(resumed), str(resumed / "dvclive"))
    assert torch.load(run_checkpoints(resumed) / "last.pt", weights_only=False)["step"] == 10
    result = run_training(
        tiny_job(resumed), live_dir=str(resumed / "dvclive"), text_encoder=HashTextEncoder()
    )
    assert result.step == 20

    a = torch.load(run_checkpoints(straight) / "last.pt", weights_only=False)
    b = torch.load(run_checkpoints(resumed) / "last.pt", weights_only=False)
    for key in ("model",):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), name
    for name, tensor in a["ema"]["module"].items():
        assert torch.equal(tensor, b["ema"]["module"][name]), name
    assert a["ranks"][0]["sampler"] == b["ranks"][0]["sampler"]
    # the plot files: the same steps and losses, no duplicated or missing rows
    for name in ("train/loss", "val/loss", "train/lr"):
        assert tsv_rows(straight / "dvclive", name) == tsv_rows(resumed / "dvclive", name), name
    steps = [int(r[0]) for r in tsv_rows(resumed / "dvclive", "train/loss")[1:]]
    assert steps == [5, 10, 15, 20]
    summary = json.loads((resumed / "dvclive" / "metrics.json").read_text())
    assert summary["step"] == 20 and summary["val"]["loss"] == pytest.approx(result.last_val_loss)
    # the artefact is the EMA weights
    trained = load_trained(resumed / "final")
    for name, tensor in trained.net.state_dict().items():
        assert torch.equal(tensor, b["ema"]["module"][name]), name


def test_loss_falls_and_lr_follows_schedule(tmp_path):
    write_fixture_shards(tmp_path)
    result = run_training(
        tiny_job(tmp_path, steps=30, val_every=30),
        live_dir=str(tmp_path / "dvclive"),
        text_encoder=HashTextEncoder(),
    )
    assert result.last_val_loss < 0.8 * result.first_val_loss
    lrs = [float(r[1]) for r in tsv_rows(tmp_path / "dvclive", "train/lr")[1:]]
    assert lrs == sorted(lrs, reverse=True)  # past the 3-step warm-up the cosine only decreases


def test_nan_guard_skips_and_counts(tmp_path, monkeypatch):
    write_fixture_shards(tmp_path)
    real_next, served = TrainBatches.next, []

    def poisoned_next(self):
        batch = real_next(self)
        served.append(batch)
        return dataclasses.replace(batch, x=batch.x * float("nan")) if len(served) == 3 else batch

    real_step, updates = Trainer.train_step, {}

    def recording_step(self):
        before = {k: v.clone() for k, v in self.net.state_dict().items()}
        loss, grad_norm, applied = real_step(self)
        changed = any(not torch.equal(v, before[k]) for k, v in self.net.state_dict().items())
        updates[self.step + 1] = (applied, changed, loss)
        return loss, grad_norm, applied

    monkeypatch.setattr(TrainBatches, "next", poisoned_next)
    monkeypatch.setattr(Trainer, "train_step", recording_step)
    result = run_training(
        tiny_job(tmp_path, steps=6, ckpt_every=6, val_every=6),
        live_dir=str(tmp_path / "dvclive"),
        text_encoder=HashTextEncoder(),
    )
    assert result.nan_skipped == 1
    applied, changed, loss = updates[3]
    assert not applied and not changed and loss != loss  # step 3 saw NaN and left the weights alone
    assert all(updates[s][0] and updates[s][1] for s in (1, 2, 4, 5, 6))
    state = torch.load(run_checkpoints(tmp_path) / "last.pt", weights_only=False)
    assert state["nan_skipped"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    summary = json.loads((tmp_path / "dvclive" / "metrics.json").read_text())
    assert summary["train"]["nan_skipped"] == 1


def test_persistent_nans_stop_training(tmp_path, monkeypatch):
    write_fixture_shards(tmp_path)
    monkeypatch.setattr(trainer_module, "MAX_CONSECUTIVE_SKIPS", 3)
    real_init = Trainer.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        with torch.no_grad():
            next(self.net.parameters()).fill_(float("nan"))

    monkeypatch.setattr(Trainer, "__init__", init)
    with pytest.raises(FloatingPointError, match="3 non-finite steps in a row"):
        run_training(tiny_job(tmp_path), live_dir=str(tmp_path / "dvclive"), text_encoder=HashTextEncoder())


def test_adamw_groups_exclude_ssm_norm_bias_and_marked_params():
    net = VelocityNet(net_config(latent_dim=4, text_dim=8, **{k: v for k, v in TINY_MODEL.items()}))
    extra = torch.nn.Parameter(torch.ones(3, 3))
    extra._no_weight_decay = True
    net.register_parameter("marked", extra)
    decay, no_decay = param_groups(net, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert any(n.endswith("A_log") for n in no_decay["names"]) and any(
        n.endswith(".D") for n in no_decay["names"]
    )
    assert "marked" in no_decay["names"]
    assert all(not n.endswith("bias") and not n.endswith("A_log") for n in decay["names"])
    assert all(p.dim() >= 2 for p in decay["params"])
    assert any("in_proj" in n for n in decay["names"])
    n_all = sum(1 for p in net.parameters() if p.requires_grad)
    assert len(decay["params"]) + len(no_decay["params"]) == n_all


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 4, 20) == pytest.approx(0.25)
    assert warmup_cosine(3, 4, 20) == pytest.approx(1.0)
    assert warmup_cosine(12, 4, 20) == pytest.approx(0.5)
    assert warmup_cosine(20, 4, 20) == pytest.approx(0.0, abs=1e-12)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, 4, 20, min_ratio=0.1)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_ema_tracks_weights():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.5)
    start = ema.module.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)  # warm-up decay min(0.5, 1/10) = 0.1
    torch.testing.assert_close(ema.module.weight, 0.1 * start + 0.9 * net.weight)
    assert not ema.module.weight.requires_grad
