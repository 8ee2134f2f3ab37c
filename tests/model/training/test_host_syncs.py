"""Device-to-host synchronisation points in one training step, counted on CPU.

On a GPU every read of a device value on the host (``.item()``, ``float(t)``, ``bool(t)``, ``torch.equal``, a
boolean-mask index, ``.tolist()`` ...) waits for the whole queue of kernels to drain. The step may have exactly
ONE: the non-finite guard's read of the loss and the gradient norm (``Trainer.train_step``), whatever the depth
of the network or ``accum_steps``. Counted here through a ``TorchDispatchMode`` (the ATen ops that read values:
``_local_scalar_dense`` (``.item()``, ``float()``, ``bool()``), ``is_nonzero``, ``equal``, ``nonzero``,
``masked_select``, ``index`` with a boolean index, ...) plus the Python methods that copy to the host without an
ATen op on CPU (``tolist``, ``numpy``, ``cpu``). AdamW's step counters are host tensors on every device when it
is not fused (the CPU run here), so reads of them are not device syncs and are not counted. Batches are made
before counting: the data path's copies are covered by the pinned, non-blocking copy tests below.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import model.flow.objective as objective_module
from model.network.backbone import VelocityNet, check_input_values
from model.network.bimamba import BiMamba, check_right_padded
from model.training import data as data_module
from model.training import setup as training_setup
from model.training.loop import Trainer, TrainResult
from model.training.setup import run_training
from tests import defaults
from tests.model.training.fixtures import HashTextEncoder, tiny_params, write_fixture_shards

SYNC_BUDGET = 1  # the non-finite guard's one read of (loss, grad norm) per step
SYNC_OPS = {
    "_local_scalar_dense",
    "is_nonzero",
    "equal",
    "nonzero",
    "masked_select",
    "_unique2",
    "unique_dim",
}
HOST_METHODS = ("tolist", "numpy", "cpu")


class SyncCounter(TorchDispatchMode):
    """Records every op or method that reads tensor values back to the host (module docstring)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        super().__init__()
        self.optimizer = optimizer
        self.events: list[str] = []

    def _host_counter(self, tensor) -> bool:
        return any(tensor is state.get("step") for state in self.optimizer.state.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNC_OPS and not (args and self._host_counter(args[0])):
            self.events.append(name)
        if name == "index" and any(i is not None and i.dtype == torch.bool for i in args[1]):
            self.events.append("index[bool]")
        return func(*args, **(kwargs or {}))

    @contextlib.contextmanager
    def counting(self):
        methods = pytest.MonkeyPatch()
        for method in HOST_METHODS:
            original = getattr(torch.Tensor, method)

            def wrapped(tensor, *args, _original=original, _name=method, **kwargs):
                self.events.append(_name)
                return _original(tensor, *args, **kwargs)

            methods.setattr(torch.Tensor, method, wrapped)
        try:
            with self:
                yield self
        finally:
            methods.undo()


def build_trainer(root: Path, monkeypatch, depth: int = 1, accum_steps: int = 1, steps: int = 4) -> Trainer:
    """A Trainer of the tiny fixtures (``depth`` blocks) whose ``batches.next()`` serves pre-made batches."""
    write_fixture_shards(root)
    tree = tiny_params(root, accum_steps=accum_steps, val_every=100, log_every=100, ckpt_every=100)
    tree["model"].update(depth=depth, d_conv=4)
    from pipelines.train import train_job

    captured = {}

    def capture(self):
        captured["trainer"] = self
        ready = [self.batches.next() for _ in range(steps * accum_steps)]
        captured["ready"] = ready
        return TrainResult(0, 0, None, None, 0, None, "")

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "fit", capture)
        run_training(
            train_job(defaults.params(tree)), live_dir=str(root / "dvclive"), text_encoder=HashTextEncoder()
        )
    trainer, ready = captured["trainer"], captured["ready"]
    trainer.batches.next = lambda: ready.pop(0)
    return trainer


def syncs_per_step(trainer: Trainer, steps: int = 3) -> list[list[str]]:
    per_step = []
    for _ in range(steps):
        counter = SyncCounter(trainer.optimizer)
        with counter.counting():
            _, _, applied = trainer.train_step()
        assert applied
        per_step.append(counter.events)
    return per_step


@pytest.mark.parametrize(("depth", "accum_steps"), [(1, 1), (3, 1), (2, 2)])
def test_one_training_step_has_one_host_sync_whatever_the_depth(tmp_path, monkeypatch, depth, accum_steps):
    trainer = build_trainer(tmp_path, monkeypatch, depth=depth, accum_steps=accum_steps)
    for events in syncs_per_step(trainer):
        assert events == ["tolist"] and len(events) == SYNC_BUDGET, events


def _put_back_per_layer_mask_check(monkeypatch):
    real = BiMamba.forward

    def forward(self, x, mask=None, lengths=None):
        if mask is not None:
            check_right_padded(mask)  # main's lengths_from_mask: torch.equal in every layer
        return real(self, x, mask, lengths)

    monkeypatch.setattr(BiMamba, "forward", forward)


def _put_back_forward_value_check(monkeypatch):
    real = VelocityNet._check_inputs

    def check(self, x, t, text, text_mask, mask):
        check_input_values(text_mask)  # main's bool(text_mask.any(dim=1).all()) in VelocityNet.forward
        return real(self, x, t, text, text_mask, mask)

    monkeypatch.setattr(VelocityNet, "_check_inputs", check)


def _put_back_loss_count(monkeypatch):
    real = objective_module.masked_mse

    def masked_mse(pred, target, mask):
        if mask is not None and int(mask.sum()) == 0:  # main's int(mask.sum()) in the loss
            raise ValueError("no valid frames")
        return real(pred, target, mask)

    monkeypatch.setattr(objective_module, "masked_mse", masked_mse)


def _put_back_separate_reads(monkeypatch):
    real = torch.nn.utils.clip_grad_norm_

    def clip(*args, **kwargs):
        norm = real(*args, **kwargs)
        float(norm)  # main read the grad norm and the loss one at a time
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)


PUT_BACK = {
    "bimamba_torch_equal": (_put_back_per_layer_mask_check, 2),  # one per layer: depth 2
    "velocitynet_bool": (_put_back_forward_value_check, 1),
    "loss_int_mask_sum": (_put_back_loss_count, 1),
    "guard_two_reads": (_put_back_separate_reads, 1),
}


@pytest.mark.parametrize("put_back", PUT_BACK.values(), ids=PUT_BACK.keys())
def test_the_count_catches_each_sync_that_main_had(tmp_path, monkeypatch, put_back):
    restore, extra = put_back
    trainer = build_trainer(tmp_path, monkeypatch, depth=2)
    restore(monkeypatch)
    for events in syncs_per_step(trainer, steps=1):
        assert len(events) == SYNC_BUDGET + extra > SYNC_BUDGET, events


def test_batches_are_pinned_for_cuda_and_copied_without_blocking(tmp_path, monkeypatch):
    pinned, copies = [], []
    monkeypatch.setattr(data_module.Batch, "pin_memory", lambda self: pinned.append(1) or self)
    real_to = data_module.Batch.to

    def to(self, device, non_blocking=False):
        copies.append(non_blocking)
        return real_to(self, device, non_blocking)

    monkeypatch.setattr(data_module.Batch, "to", to)
    trainer = build_trainer(tmp_path, monkeypatch, steps=1)
    assert pinned == []  # CPU training: nothing to pin
    trainer.train_step()
    assert copies and all(copies)
    clips = data_module.load_split(tmp_path / "shards", "train")
    batches = data_module.TrainBatches(clips, trainer.texts, trainer.standardiser, 2, 8, 0, pin_memory=True)
    batches.next()
    assert pinned == [1]


def test_training_on_cuda_asks_for_pinned_batches(tmp_path, monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def batches(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    write_fixture_shards(tmp_path)
    from pipelines.train import train_job

    monkeypatch.setattr(training_setup, "TrainBatches", batches)
    job = train_job(defaults.params(tiny_params(tmp_path)))
    for device, pin in (("cpu", False), ("cuda", True)):
        with pytest.raises(Stop):
            run_training(
                job, device=device, live_dir=str(tmp_path / "dvclive"), text_encoder=HashTextEncoder()
            )
        assert seen["pin_memory"] is pin
