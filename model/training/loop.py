"""The training loop: flow-matching loss, AdamW + warmup/cosine, grad clipping, EMA, NaN guard, validation,
DVCLive logging and exact resume from checkpoints.

One step (one optimiser update): ``train.accum_steps`` micro-batches of ``train.batch_size``, each: next batch ->
loss under bf16 autocast on CUDA (fp32 on CPU) -> backward of loss / accum_steps (DDP averages gradients on the
last micro-batch only) -> clip -> if the mean loss and gradient norm are finite: AdamW step + EMA update, else
skip and count -> scheduler step. The step reads device values back to the host once (the non-finite guard's
loss and gradient norm, one copy of two numbers), whatever the depth or accum_steps: no ``.item()``,
``bool(tensor)`` or ``torch.equal`` in the forward, and batches are copied with ``non_blocking=True`` from
pinned memory on CUDA (tests/model/training/test_host_syncs.py). ``step`` counts updates, so warmup, schedule, EMA, logging, validation and
checkpoints are all in updates whatever accum_steps is; checkpoints fall between updates. Every random draw is seeded (the batch stream's state, one torch.Generator per rank for
t/noise/condition dropout, the global RNGs for anything in the network), and all of it is in the checkpoint,
so 10 steps + kill + resume to 20 gives bit-identical weights to 20 steps straight.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from model.data.stats import Standardiser
from model.flow.objective import FlowMatching
from model.network.mamba import ScanChoice, scan_choice
from model.training.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointDir,
    CheckpointMismatchError,
    check_resumable,
)
from model.training.config import TrainConfig
from model.training.context import SINGLE, DistContext
from model.training.data import LatentClips, TrainBatches, validation_batches
from model.training.ema import EMA
from model.training.log import MetricsLog
from model.training.optimizer import build_optimizer, build_scheduler, load_optimizer_state
from model.training.text_bank import TextBank

logger = logging.getLogger(__name__)

# devices whose steps run under bf16 autocast (tests add "cpu" to exercise the mixed-precision path on CPU)
AUTOCAST_DEVICE_TYPES: tuple[str, ...] = ("cuda",)
MAX_CONSECUTIVE_SKIPS = 50  # this many non-finite steps in a row means divergence, not a glitch
VAL_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or already finished) run reports. ``resumed_from``: the checkpoint step it started at
    (0: fresh); ``steps_per_s``: median over this process's log windows (a run fact, kept out of DVCLive so
    that the logged metrics are a function of inputs, code and params); ``ckpt_dir``: its run directory."""

    step: int
    nan_skipped: int
    first_val_loss: float | None
    last_val_loss: float | None
    resumed_from: int
    steps_per_s: float | None
    ckpt_dir: str
    scan: dict[str, str] | None = None  # ScanChoice.as_dict(): the scan backend that ran, and why


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    states = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    generator.set_state(states["generator"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def weights_digest(net: nn.Module) -> float:
    """A cheap fingerprint of the weights (sum of |w| in float64) to check that DDP replicas agree."""
    return float(sum(p.detach().double().abs().sum().item() for p in net.parameters()))


class Trainer:
    """Trains ``net`` (a VelocityNet-like module) on ``batches``; rank 0 validates, logs and checkpoints."""

    def __init__(
        self,
        net: nn.Module,
        config: TrainConfig,
        batches: TrainBatches,
        texts: TextBank,
        standardiser: Standardiser,
        val_clips: LatentClips | None,
        fingerprint: dict[str, Any],
        device: torch.device,
        dist: DistContext = SINGLE,
        prepare: Any = None,
        live_dir: str = "dvclive",
    ):
        self.cfg, self.batches, self.texts, self.standardiser = config, batches, texts, standardiser
        self.val_clips = val_clips if val_clips is not None and len(val_clips) > 0 else None
        self.fingerprint, self.device, self.dist = fingerprint, torch.device(device), dist
        self.net = net.to(self.device)
        # probed now: an explicit scan_backend that cannot run here fails before the first step, not mid-run
        self.scan: ScanChoice | None = scan_choice(self.net, self.device)
        null_text, null_mask = texts.null_condition()
        self.flow = FlowMatching(self.net, config.flow, null_text, null_mask).to(self.device)
        self.model = prepare(self.flow, self.device) if prepare is not None else self.flow
        self.optimizer = build_optimizer(self.net, config.lr, config.weight_decay, self.device)
        self.scheduler = build_scheduler(self.optimizer, config.warmup, config.steps, config.min_lr_ratio)
        self.ema = EMA(self.net, config.ema_decay)
        self.ema_flow = FlowMatching(self.ema.module, config.flow, null_text, null_mask).to(self.device)
        self.generator = torch.Generator(self.device).manual_seed(config.seed * 7919 + dist.rank + 1)
        self.ckpt = CheckpointDir(config.ckpt_dir, config.keep)
        self.log = MetricsLog(live_dir) if dist.is_main else None
        self.step = 0
        self.nan_skipped = 0
        self.consecutive_skips = 0
        self.loss_window: list[float] = []
        self.val_losses: list[float] = []
        self.window_rates: list[float] = []  # steps/s per log window of this process (not checkpointed)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type in AUTOCAST_DEVICE_TYPES:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ---- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The full training state; gathers every rank's sampler and RNG state (a collective call)."""
        per_rank = self.dist.gather(
            {
                "sampler": self.batches.state_dict(),
                "rng": rng_states(self.generator),
                "digest": weights_digest(self.net),
            }
        )
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "total_steps": self.cfg.steps,
            "fingerprint": self.fingerprint,
            "model": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ranks": per_rank,
            "nan_skipped": self.nan_skipped,
            "consecutive_skips": self.consecutive_skips,
            "loss_window": list(self.loss_window),
            "val_losses": list(self.val_losses),
            "log": self.log.state_dict() if self.log is not None else None,
        }

    def save_checkpoint(self) -> None:
        state = self.state_dict()
        digests = [r["digest"] for r in state["ranks"]]
        if len(set(digests)) > 1:
            raise RuntimeError(
                f"data-parallel replicas diverged at step {self.step}: weight digests {digests}"
            )
        if self.dist.is_main:
            self.ckpt.save(state, self.step)

    def restore(self) -> dict[str, Any] | None:
        """Load last.pt if present (after checking its fingerprint); returns the log state to resume with."""
        if self.dist.is_main:
            self.ckpt.remove_partial_writes()
        if not self.cfg.resume:
            if self.dist.is_main and (self.ckpt.last.exists() or self.ckpt.periodic()):
                logger.warning("train.resume is false: removing the old checkpoints in %s", self.ckpt.dir)
                self.ckpt.clear()
            return None
        # on CPU: RNG states must stay CPU tensors; load_state_dict moves the rest to where the parameters live
        state = self.ckpt.load_last(map_location="cpu")
        if state is None:
            return None
        check_resumable(state, self.fingerprint, self.ckpt.last)
        source = self.ckpt.last
        if int(state["step"]) > self.cfg.steps:
            earlier = self.ckpt.load_within(self.cfg.steps, map_location="cpu")
            if earlier is None:
                raise CheckpointMismatchError(
                    f"{self.ckpt.last} is at step {state['step']}, beyond train.steps={self.cfg.steps}, and no "
                    f"periodic checkpoint is at or before it; raise train.steps, or start fresh with "
                    f"train.resume: false (or rm -r {self.ckpt.dir})"
                )
            logger.warning(
                "%s is at step %d, beyond train.steps=%d (a longer run shares this run directory): resuming "
                "from %s",
                self.ckpt.last,
                state["step"],
                self.cfg.steps,
                earlier[0],
            )
            source, state = earlier
            check_resumable(state, self.fingerprint, source)
        if int(state["total_steps"]) != self.cfg.steps:
            logger.warning(
                "extending the run in %s from %d to %d steps: the cosine schedule is stretched to the "
                "new length from step %d on",
                self.ckpt.dir,
                state["total_steps"],
                self.cfg.steps,
                state["step"],
            )
        if len(state["ranks"]) != self.dist.world_size:
            raise RuntimeError(
                f"{self.ckpt.last} was written by {len(state['ranks'])} workers, this run has "
                f"{self.dist.world_size}; set train.workers back or start fresh"
            )
        self.net.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        mine = state["ranks"][self.dist.rank]
        self.batches.load_state_dict(mine["sampler"])
        set_rng_states(mine["rng"], self.generator)
        self.step, self.nan_skipped = int(state["step"]), int(state["nan_skipped"])
        self.consecutive_skips = int(state["consecutive_skips"])
        self.loss_window, self.val_losses = list(state["loss_window"]), list(state["val_losses"])
        logger.info("resumed from %s at step %d", source, self.step)
        return state["log"]

    # ---- validation --------------------------------------------------------------------------------------
    @torch.no_grad()
    def validation_loss(self, flow: FlowMatching) -> float:
        """Frame-weighted mean loss over the validation clips, with the same seeded noise every time."""
        assert self.val_clips is not None
        generator = torch.Generator(self.device).manual_seed(self.cfg.seed + VAL_SEED_OFFSET)
        total, frames = 0.0, 0
        was_training = flow.training
        flow.eval()
        for batch in validation_batches(
            self.val_clips, self.texts, self.standardiser, self.cfg.val_batch_size, self.cfg.frames
        ):
            n = int(batch.mask.sum())  # on the CPU copy: no device sync
            batch = batch.to(self.device, non_blocking=True)
            with self.autocast():
                loss, _ = flow(batch.x, batch.mask, batch.text, batch.text_mask, generator, drop=False)
            total, frames = total + float(loss) * n, frames + n
        flow.train(was_training)
        return total / frames

    def validate(self) -> None:
        if not self.dist.is_main or self.val_clips is None:
            return
        ema_loss, raw_loss = self.validation_loss(self.ema_flow), self.validation_loss(self.flow)
        self.val_losses.append(ema_loss)
        self.log.log(self.step, {"val/loss": ema_loss, "val/loss_raw": raw_loss})
        logger.info("step %d: val loss %.4f (EMA), %.4f (raw)", self.step, ema_loss, raw_loss)

    # ---- the loop ----------------------------------------------------------------------------------------
    def train_step(self) -> tuple[float, float, bool]:
        """One update over ``accum_steps`` micro-batches; returns (mean loss over micro-batches and ranks, grad
        norm, applied?)."""
        accum = self.cfg.accum_steps
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for micro in range(accum):
            batch = self.batches.next().to(self.device, non_blocking=True)
            # DDP all-reduces on the last micro-batch only; the earlier ones accumulate locally
            sync = micro == accum - 1 or not hasattr(self.model, "no_sync")
            with contextlib.nullcontext() if sync else self.model.no_sync():
                with self.autocast():
                    loss, _ = self.model(batch.x, batch.mask, batch.text, batch.text_mask, self.generator)
                (loss / accum).backward()
            total = total + loss.detach().float()
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), clip)
        mean_loss = self.dist.all_mean(total / accum)
        # the step's one device-to-host read: the guard's two numbers in one copy
        loss_value, grad_norm = torch.stack([mean_loss, norm.float().reshape(())]).tolist()
        applied = math.isfinite(loss_value) and math.isfinite(grad_norm)
        if applied:
            self.optimizer.step()
            self.ema.update(self.net)
            self.consecutive_skips = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.nan_skipped += 1
            self.consecutive_skips += 1
            logger.warning(
                "step %d: non-finite loss %s / grad norm %s, update skipped (%d so far)",
                self.step + 1,
                loss_value,
                grad_norm,
                self.nan_skipped,
            )
            if self.consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
                raise FloatingPointError(
                    f"{self.consecutive_skips} non-finite steps in a row at step "
                    f"{self.step + 1}: training diverged; lower train.lr or check the data"
                )
        with warnings.catch_warnings():
            # a skipped first update makes torch warn about the call order; the schedule counts steps, not updates
            warnings.filterwarnings(
                "ignore", message="Detected call of `lr_scheduler.step", category=UserWarning
            )
            self.scheduler.step()
        return loss_value, grad_norm, applied

    def fit(self) -> TrainResult:
        """Train until ``cfg.steps`` (resuming from last.pt when allowed); returns the run's summary."""
        log_state = self.restore()
        resumed_from = self.step
        if self.log is not None:
            self.log.start(log_state)
            if self.scan is not None:  # so a run on a slow path shows in `dvc exp show`
                self.log.log_params({"scan_backend": self.scan.label})
        if self.step == 0:
            self.validate()
        elif self.step >= self.cfg.steps:
            logger.info(
                "%s is already at step %d of %d: nothing to train", self.ckpt.last, self.step, self.cfg.steps
            )
        self.model.train()
        bar = tqdm(
            total=self.cfg.steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not self.dist.is_main,
            dynamic_ncols=True,
        )
        window_start, grad_norms = time.perf_counter(), []
        while self.step < self.cfg.steps:
            lr = self.optimizer.param_groups[0]["lr"]
            loss, grad_norm, applied = self.train_step()
            self.step += 1
            bar.update(1)
            if applied:
                self.loss_window.append(loss)
                grad_norms.append(grad_norm)
            if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                elapsed = time.perf_counter() - window_start
                self._log_train(lr, grad_norms, len(grad_norms) / max(elapsed, 1e-9), bar)
                window_start, grad_norms = time.perf_counter(), []
            if self.step % self.cfg.val_every == 0 or self.step == self.cfg.steps:
                self.validate()
            if self.step % self.cfg.ckpt_every == 0 or self.step == self.cfg.steps:
                self.save_checkpoint()
        bar.close()
        if self.log is not None:
            self.log.end()
        first = self.val_losses[0] if self.val_losses else None
        last = self.val_losses[-1] if self.val_losses else None
        rate = float(np.median(self.window_rates)) if self.window_rates else None
        scan = self.scan.as_dict() if self.scan is not None else None
        return TrainResult(
            self.step, self.nan_skipped, first, last, resumed_from, rate, str(self.ckpt.dir), scan
        )

    def _log_train(self, lr: float, grad_norms: list[float], steps_per_s: float, bar: tqdm) -> None:
        self.window_rates.append(steps_per_s)
        if self.log is None:
            self.loss_window = []
            return
        metrics = {"train/lr": lr}
        if self.loss_window:
            metrics["train/loss"] = sum(self.loss_window) / len(self.loss_window)
        if grad_norms:
            metrics["train/grad_norm"] = sum(grad_norms) / len(grad_norms)
        self.log.log(self.step, metrics, summary_only={"train/nan_skipped": self.nan_skipped})
        bar.set_postfix(loss=f"{metrics.get('train/loss', float('nan')):.4f}", lr=f"{lr:.2e}")
        self.loss_window = []
