"""Gradient accumulation (train.accum_steps): one step = one update over accum_steps micro-batches."""

import contextlib

import pytest
import torch

from model.training.config import TrainConfig
from model.training.loop import Trainer
from model.training.setup import run_training
from tests.defaults import config
from tests.model.training.fixtures import HashTextEncoder, run_checkpoints, tiny_job, write_fixture_shards


def test_accum_steps_is_validated_and_fingerprinted_only_off_its_default():
    assert config(TrainConfig, "train", accum_steps=4).accum_steps == 4
    with pytest.raises(ValueError, match="train.accum_steps"):
        config(TrainConfig, "train", accum_steps=0)
    assert (
        "accum_steps" not in config(TrainConfig, "train").resume_fingerprint()
    )  # old runs keep their run dir
    assert config(TrainConfig, "train", accum_steps=2).resume_fingerprint()["accum_steps"] == 2


def test_each_step_draws_accum_steps_batches_and_resumes_exactly(tmp_path, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for root in (straight, resumed):
        write_fixture_shards(root)
    drawn = []
    real_step = Trainer.train_step

    def counting_step(self):
        out = real_step(self)
        drawn.append((self.step, self.batches.state_dict()))  # what was handed out (batches are prefetched)
        return out

    monkeypatch.setattr(Trainer, "train_step", counting_step)
    params = {"steps": 8, "ckpt_every": 4, "val_every": 8, "accum_steps": 3, "batch_size": 2}
    result = run_training(
        tiny_job(straight, **params), live_dir=str(straight / "dvclive"), text_encoder=HashTextEncoder()
    )
    assert result.step == 8
    # 12 train clips, 2 per micro-batch, 3 micro-batches per step: 6 clips a step, two steps an epoch
    positions = [(state["epoch"], state["position"]) for _, state in drawn[:3]]
    assert positions == [(0, 6), (1, 0), (1, 6)]

    def dying_step(self):
        if self.step == 5:
            raise KeyboardInterrupt("simulated kill")
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        run_training(
            tiny_job(resumed, **params), live_dir=str(resumed / "dvclive"), text_encoder=HashTextEncoder()
        )
    monkeypatch.setattr(Trainer, "train_step", real_step)
    run_training(
        tiny_job(resumed, **params), live_dir=str(resumed / "dvclive"), text_encoder=HashTextEncoder()
    )
    a = torch.load(run_checkpoints(straight) / "last.pt", weights_only=False)
    b = torch.load(run_checkpoints(resumed) / "last.pt", weights_only=False)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_accumulated_gradient_is_the_mean_of_the_micro_batch_gradients(tmp_path, monkeypatch):
    write_fixture_shards(tmp_path)
    grads = {}
    real_step = Trainer.train_step

    def capture(self):
        if "one" in grads:
            return real_step(self)
        state = (self.batches.state_dict(), self.generator.get_state(), torch.get_rng_state())
        # reference: each micro-batch on its own, with the same batches and random draws
        per_micro = []
        for _ in range(self.cfg.accum_steps):
            self.optimizer.zero_grad(set_to_none=True)
            batch = self.batches.next()
            loss, _ = self.model(batch.x, batch.mask, batch.text, batch.text_mask, self.generator)
            loss.backward()
            per_micro.append([p.grad.clone() for p in self.net.parameters()])
        self.batches.load_state_dict(state[0])
        self.generator.set_state(state[1])
        torch.set_rng_state(state[2])
        grads["micro"] = per_micro
        real_clip = torch.nn.utils.clip_grad_norm_

        def recording_clip(parameters, *args, **kwargs):  # the step's accumulated gradient, before the update
            parameters = list(parameters)
            grads.setdefault("one", [p.grad.clone() for p in parameters])
            return real_clip(parameters, *args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
            return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", capture)
    run_training(
        tiny_job(tmp_path, steps=2, accum_steps=2, grad_clip=0.0, val_every=100),
        live_dir=str(tmp_path / "dvclive"),
        text_encoder=HashTextEncoder(),
    )
    for accumulated, first, second in zip(grads["one"], *grads["micro"], strict=True):
        torch.testing.assert_close(accumulated, (first + second) / 2, rtol=1e-5, atol=1e-7)


def test_gradient_sync_is_skipped_on_all_but_the_last_micro_batch(tmp_path):
    """With a DDP-like wrapper (``no_sync``), forward AND backward of micro-batches 1..k-1 run inside no_sync."""
    events = []

    class SyncRecorder(torch.nn.Module):
        def __init__(self, flow):
            super().__init__()
            self.flow = flow
            self.in_no_sync = False

        @contextlib.contextmanager
        def no_sync(self):
            self.in_no_sync = True
            try:
                yield
            finally:
                self.in_no_sync = False

        def forward(self, *args, **kwargs):
            loss, path = self.flow(*args, **kwargs)
            events.append(("forward", self.in_no_sync))
            loss.register_hook(lambda grad: events.append(("backward", self.in_no_sync)))
            return loss, path

    write_fixture_shards(tmp_path)
    run_training(
        tiny_job(tmp_path, steps=2, accum_steps=3, val_every=100),
        live_dir=str(tmp_path / "dvclive"),
        prepare=lambda flow, device: SyncRecorder(flow),
        text_encoder=HashTextEncoder(),
    )
    per_micro = [False, False, True]  # in no_sync, in no_sync, synchronised
    expected = [(kind, not synced) for synced in per_micro for kind in ("forward", "backward")] * 2
    assert events == expected
