"""The network sections of ``bench/gpu_check.py``: paper-size training steps/s and peak memory per scan path, the
largest batch that fits at 323 frames, one 10 s clip as the generate stage samples it, and a 2-GPU DDP step.

Imports torch and flowjam's torch-only modules (``model.network``, ``model.flow.objective/sampling/precision``,
``model.training.batch_plan``).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_check_scan import available_backends, scan_path  # noqa: E402
from gpu_check_setup import Sizes, _null, _sync, _text, sizes_for  # noqa: E402

from model.flow.objective import PAPER_FLOW, FlowMatching  # noqa: E402
from model.flow.precision import sampling_precision  # noqa: E402
from model.flow.sampling import sample  # noqa: E402
from model.network.backbone import VelocityNet  # noqa: E402
from model.network.mamba import scan_choice  # noqa: E402
from model.training.batch_plan import plan_batch  # noqa: E402

MAX_BATCH_SECONDS = 150  # the search stops trying larger batches after this long


class _Trainer:
    """The paper's training step (flow loss under bf16 autocast on CUDA, backward, clip, fused AdamW on CUDA)."""

    def __init__(self, sizes: Sizes, device: torch.device, backend: str) -> None:
        torch.manual_seed(0)
        cfg = dataclasses.replace(sizes.net, scan_backend=backend)
        self.net = VelocityNet(cfg).to(device)
        self.cfg, self.device, self.frames = cfg, device, sizes.frames
        text, mask = _text(1, cfg, device)
        self.flow = FlowMatching(self.net, PAPER_FLOW, *_null(text, mask)).to(device).train()
        fused = {"fused": True} if device.type == "cuda" else {}  # model.training.optimizer's choice
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=1e-4, weight_decay=0.01, **fused)
        self.gen = torch.Generator(device).manual_seed(0)

    def step(self, batch: int) -> None:
        x = torch.randn(batch, self.cfg.latent_dim, self.frames, device=self.device)
        mask = torch.ones(batch, self.frames, dtype=torch.bool, device=self.device)
        text, text_mask = _text(batch, self.cfg, self.device)
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss, _ = self.flow(x, mask, text, text_mask, self.gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def check_train(device: torch.device, sizes: Sizes, **_: Any) -> dict[str, Any]:
    """Steps/s and peak memory at ``sizes.batch`` × ``sizes.frames`` with each scan path that runs here."""
    result: dict[str, Any] = {
        "batch": sizes.batch,
        "frames": sizes.frames,
        "bf16_autocast": device.type == "cuda",
    }
    for name in available_backends(device):
        with scan_path(name) as backend:
            trainer = _Trainer(sizes, device, backend)
            for _ in range(sizes.warmup):  # JIT compiles, probes, allocator
                trainer.step(sizes.batch)
            _sync(device)
            _reset(device)
            start = time.perf_counter()
            for _ in range(sizes.steps):
                trainer.step(sizes.batch)
            _sync(device)
            seconds = (time.perf_counter() - start) / sizes.steps
            label = scan_choice(trainer.net, device).label
            result[name] = {"steps_per_s": 1.0 / seconds, "peak_gib": _peak_gib(device), "ran": label}
            del trainer
            _reset(device)
    fastest = next(n for n in result if isinstance(result[n], dict))
    result["speedup_over_torch"] = result[fastest]["steps_per_s"] / result["torch"]["steps_per_s"]
    result["fastest"] = fastest
    return result


def _fits(trainer: _Trainer, batch: int, sizes: Sizes) -> tuple[bool, float | None]:
    if sizes.fake_capacity is not None and batch > sizes.fake_capacity:  # dry run: exercise the OOM path
        return False, None
    _reset(trainer.device)
    try:
        trainer.step(batch)
        _sync(trainer.device)
    except torch.OutOfMemoryError:
        trainer.opt.zero_grad(set_to_none=True)
        _reset(trainer.device)
        return False, None
    return True, _peak_gib(trainer.device)


def check_max_batch(device: torch.device, sizes: Sizes, **_: Any) -> dict[str, Any]:
    """The largest batch at ``sizes.frames`` that trains with the fastest scan path (doubling from
    ``sizes.batch``, then halving the gap to a multiple of 8), against ``model.training.batch_plan``. The dry run
    searches with the torch scan against a fake capacity (the search logic, not the memory, is what it tests)."""
    name = available_backends(device)[0] if sizes.fake_capacity is None else "torch"
    started, tried = time.perf_counter(), {}
    with scan_path(name) as backend:
        trainer = _Trainer(sizes, device, backend)
        low, high = 0, None
        batch = sizes.batch
        while batch <= sizes.max_batch and time.perf_counter() - started < MAX_BATCH_SECONDS:
            ok, peak = _fits(trainer, batch, sizes)
            tried[batch] = peak if ok else "OOM"
            if not ok:
                high = batch
                break
            low, batch = batch, batch * 2
        step = 8 if sizes.fake_capacity is None else 1
        while high is not None and high - low > step and time.perf_counter() - started < MAX_BATCH_SECONDS:
            mid = (low + high) // 2 // step * step or low + step
            ok, peak = _fits(trainer, mid, sizes)
            tried[mid] = peak if ok else "OOM"
            low, high = (mid, high) if ok else (low, mid)
        del trainer
        _reset(device)
    result: dict[str, Any] = {
        "frames": sizes.frames,
        "scan": name,
        "largest_fitting_batch": low,
        "tried": tried,
    }
    result["search_capped"] = high is None
    if device.type == "cuda":
        memory = torch.cuda.get_device_properties(device).total_memory / 2**30
        plan = plan_batch(memory)
        result["plan"] = {"batch_size": plan.batch_size, "accum_steps": plan.accum_steps}
        result["plan"]["estimated_peak_gib"] = plan.estimated_peak_gib
    else:
        result["note"] = f"dry run: a fake capacity of {sizes.fake_capacity} clips stands in for the memory"
    return result


def check_generate(device: torch.device, sizes: Sizes, **_: Any) -> dict[str, Any]:
    """One 10 s clip (CFG batch of 2) with random paper-size weights, as the generate stage samples it: scan
    ``auto``, ``generate.precision`` through ``model.flow.precision``; timed after a warm-up of each setting."""
    torch.manual_seed(0)
    net = VelocityNet(dataclasses.replace(sizes.net, scan_backend="auto")).to(device).eval()
    text, text_mask = _text(1, sizes.net, device)
    result: dict[str, Any] = {"frames": sizes.gen_frames, "scan": scan_choice(net, device).label}
    for name, run in sizes.generate.items():

        def render(steps: int, run=run) -> torch.Tensor:
            with sampling_precision(run.precision, device):
                return sample(
                    net,
                    text,
                    text_mask,
                    text[:, :1],
                    text_mask[:, :1],
                    sizes.gen_frames,
                    steps=steps,
                    cfg_scale=run.cfg_scale,
                    method=run.method,
                    generator=torch.Generator().manual_seed(0),
                )

        render(2)  # warm-up: kernels, autotuning, allocator
        _sync(device)
        start = time.perf_counter()
        z = render(run.steps)
        _sync(device)
        if not torch.isfinite(z).all():
            raise RuntimeError(f"the {name} setting's sample is not finite")
        result[name] = {**dataclasses.asdict(run), "seconds": time.perf_counter() - start}
    return result


def _ddp_worker(rank: int, world: int, init_file: str, dry_run: bool, out_file: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    backend = "gloo" if dry_run else "nccl"
    torch.distributed.init_process_group(
        backend, init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    device = torch.device("cpu") if dry_run else torch.device("cuda", rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    sizes = sizes_for(dry_run)
    torch.manual_seed(0)
    net = VelocityNet(dataclasses.replace(sizes.net, scan_backend="torch" if dry_run else "auto")).to(device)
    text, text_mask = _text(sizes.batch, sizes.net, device)
    flow = FlowMatching(net, PAPER_FLOW, *_null(text, text_mask)).to(device).train()
    model = DistributedDataParallel(flow, device_ids=None if dry_run else [rank])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    gen = torch.Generator(device).manual_seed(rank)
    x = torch.randn(sizes.batch, sizes.net.latent_dim, sizes.frames, device=device, generator=gen)
    mask = torch.ones(sizes.batch, sizes.frames, dtype=torch.bool, device=device)
    times = []
    for _ in range(3):
        _sync(device)
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=not dry_run):
            loss, _ = model(x, mask, text, text_mask, gen)
        loss.backward()
        opt.step()
        _sync(device)
        times.append(time.perf_counter() - start)
    digest = torch.stack([p.detach().double().abs().sum() for p in net.parameters()]).sum().reshape(1)
    digests = [torch.zeros_like(digest) for _ in range(world)]
    torch.distributed.all_gather(digests, digest)
    if rank == 0:
        Path(out_file).write_text(
            json.dumps({"step_s": min(times[1:]), "digests": [d.item() for d in digests]})
        )
    torch.distributed.destroy_process_group()


def check_ddp(dry_run: bool, **_: Any) -> dict[str, Any]:
    gpus = torch.cuda.device_count()
    if not dry_run and gpus < 2:
        return {"skipped": f"{gpus} GPU(s) present; DDP needs 2"}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ddp.json")
        torch.multiprocessing.spawn(_ddp_worker, args=(2, os.path.join(tmp, "init"), dry_run, out), nprocs=2)
        result = json.loads(Path(out).read_text())
    if len(set(result["digests"])) != 1:
        raise RuntimeError(f"DDP replicas diverged after 3 steps: {result['digests']}")
    return {"world_size": 2, "backend": "gloo" if dry_run else "nccl", **result}
