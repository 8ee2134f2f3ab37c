"""Profile of the train stage's own code path: ``run_training`` (the function the stage calls) on a finished run's
packed latents, with timers around each part of a step and of the loop.

Parts (per step, wall and this process's CPU time): data wait (``TrainBatches.next`` on the training thread),
forward (the flow loss), backward, clip (``clip_grad_norm_``), optimizer (AdamW step), EMA, the rest of the
step (zero_grad, scheduler); outside the step: logging (DVCLive), validation, checkpoints, the loop itself. The prefetch thread's
CPU time (assembling batches in the background) is reported beside them. Timers only read clocks around the
calls: nothing in the step changes.

Run from a checkout whose data/ holds a finished ``dvc repro pack`` (or point --root at one):
    PYTHONPATH=$PWD .venv/bin/python bench/profile_train.py --root /tmp/clone --steps 400
``--resume RUN_DIR`` copies a run's checkpoint directory (``checkpoints/run-<hash>``) into the scratch directory
first, so the profile is of a trained network (denormal numbers appear only in trained weights);
``--threads N`` sets torch's intra-op threads first (0 = leave the stage's choice), ``--prefetch N`` the batches
the background thread assembles ahead (0 = none, on the training thread). ``--compare`` runs several
variants (each ``NAME=ARGS``, ARGS as for this script, ``KEY=VALUE`` tokens set environment variables) in
interleaved rounds, each in a fresh process, and prints the medians (see docs/benchmarks.md); ``CODE_ROOT=DIR`` in a
variant's ARGS runs another checkout's code (e.g. the commit before a change) under the same clocks.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

# CODE_ROOT: profile another checkout's code (e.g. the commit before a change) with this script
sys.path.insert(0, os.environ.get("CODE_ROOT", str(Path(__file__).resolve().parents[1])))
USER_OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")  # variants start from the caller's environment

import torch  # noqa: E402

from model.training import setup as training_setup  # noqa: E402
from model.training.loop import Trainer  # noqa: E402
from model.training.setup import TEXT_CACHE, run_training  # noqa: E402
from pipelines.common.params import load_params  # noqa: E402
from pipelines.train import train_job  # noqa: E402

STEP_PARTS = ("data_wait", "forward", "backward", "clip", "optimizer", "ema")
LOOP_PARTS = ("logging", "validation", "checkpoint")


class Clock:
    """Wall and process-CPU seconds per named part: totals, and one record per training step (for medians)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.thread: dict[str, float] = defaultdict(float)
        self.steps: list[dict[str, tuple[float, float]]] = []  # per step: part -> (wall, cpu)

    def add(self, name: str, wall: float, cpu: float, thread: float = 0.0) -> None:
        self.wall[name] += wall
        self.cpu[name] += cpu
        self.thread[name] += thread
        if getattr(_in_step, "on", False) and self.steps:
            w, c = self.steps[-1].get(name, (0.0, 0.0))
            self.steps[-1][name] = (w + wall, c + cpu)

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        wall, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - thread)

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            with self.part(name):
                return fn(*args, **kwargs)

        return timed


CLOCK = Clock()
BARE = False  # --bare: time the bare loop (forward, backward, AdamW) on the stage's own objects instead
_in_step = threading.local()


class ProfiledTrainer(Trainer):
    """The stage's Trainer with clocks around its parts (the step's code is the parent's, unchanged)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        batches = self.batches
        batches.next = CLOCK.wrap("data_wait", batches.next)
        assemble = batches._assemble
        prefetch_cpu, prefetch_lock = CLOCK.thread, threading.Lock()

        def assemble_timed(items):
            started = time.thread_time()
            try:
                return assemble(items)
            finally:
                with prefetch_lock:
                    prefetch_cpu["prefetch_thread"] += time.thread_time() - started

        batches._assemble = assemble_timed
        self.ema.update = CLOCK.wrap("ema", self.ema.update)
        self.optimizer.step = CLOCK.wrap("optimizer", self.optimizer.step)
        self._forward_started: list[tuple[float, float, float]] = []
        self.model.register_forward_pre_hook(self._forward_pre)
        self.model.register_forward_hook(self._forward_post)

    def _forward_pre(self, *_):
        if getattr(_in_step, "on", False):
            self._forward_started.append((time.perf_counter(), time.process_time(), time.thread_time()))

    def _forward_post(self, *_):
        if getattr(_in_step, "on", False) and self._forward_started:
            wall, cpu, thread = self._forward_started.pop()
            CLOCK.add(
                "forward", time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - thread
            )

    def train_step(self):
        _in_step.on = True
        CLOCK.steps.append({})
        try:
            with CLOCK.part("step"):
                return self._bare_step() if BARE else super().train_step()
        finally:
            _in_step.on = False

    def _bare_step(self):
        """The issue's bare loop on the same objects: next batch, flow loss, backward, AdamW step."""
        self.optimizer.zero_grad(set_to_none=True)
        batch = self.batches.next()
        loss, _ = self.model(batch.x, batch.mask, batch.text, batch.text_mask, self.generator)
        loss.backward()
        self.optimizer.step()
        return float(loss), 0.0, True

    def validate(self):
        with CLOCK.part("validation"):
            return super().validate()

    def save_checkpoint(self):
        with CLOCK.part("checkpoint"):
            return super().save_checkpoint()

    def _log_train(self, *args, **kwargs):
        with CLOCK.part("logging"):
            return super()._log_train(*args, **kwargs)


@contextlib.contextmanager
def timed_backward_and_clip() -> Iterator[None]:
    """Clocks around Tensor.backward and clip_grad_norm_ (the loop looks both up at call time)."""
    backward, clip = torch.Tensor.backward, torch.nn.utils.clip_grad_norm_

    def backward_timed(self, *args, **kwargs):
        if not getattr(_in_step, "on", False):
            return backward(self, *args, **kwargs)
        with CLOCK.part("backward"):
            return backward(self, *args, **kwargs)

    torch.Tensor.backward = backward_timed
    torch.nn.utils.clip_grad_norm_ = CLOCK.wrap("clip", clip)
    try:
        yield
    finally:
        torch.Tensor.backward, torch.nn.utils.clip_grad_norm_ = backward, clip


def thread_cpu_seconds() -> list[tuple[str, float]]:
    """(name, CPU seconds) of every live thread of this process (Linux /proc), busiest first."""
    tick = os.sysconf("SC_CLK_TCK")
    rows = []
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        rows.append((f"{name}[{task.name}]", (int(fields[11]) + int(fields[12])) / tick))
    return sorted(rows, key=lambda r: -r[1])


def rec_part(record: dict[str, tuple[float, float]], name: str) -> tuple[float, float]:
    """(wall, cpu) of one part in one step's record; ``rest_of_step`` is the step less the timed parts."""
    if name != "rest_of_step":
        return record.get(name, (0.0, 0.0))
    wall, cpu = record.get("step", (0.0, 0.0))
    for part in STEP_PARTS:
        wall, cpu = wall - record.get(part, (0.0, 0.0))[0], cpu - record.get(part, (0.0, 0.0))[1]
    return wall, cpu


def profile(args: argparse.Namespace) -> dict:
    root = Path(args.root).resolve()
    params = load_params(root / args.params)
    if args.threads:
        torch.set_num_threads(args.threads)
    job = train_job(params)
    with tempfile.TemporaryDirectory(prefix="profile-train-") as tmp:
        scratch = Path(tmp)
        ckpt_root = scratch / "checkpoints"
        ckpt_root.mkdir()
        cache = root / params.train.ckpt_dir / TEXT_CACHE
        if cache.exists():
            shutil.copytree(cache, ckpt_root / TEXT_CACHE)
        start_step = 0
        if args.resume:
            run = Path(args.resume)
            shutil.copytree(run, ckpt_root / run.name)
            start_step = int(torch.load(run / "last.pt", weights_only=False)["step"])
        train = dataclasses.replace(
            job.train,
            steps=start_step + args.steps,
            ckpt_dir=str(ckpt_root),
            out_dir=str(scratch / "final"),
            resume=bool(args.resume),
            **({"val_every": args.val_every, "ckpt_every": args.val_every} if args.val_every else {}),
        )
        job = dataclasses.replace(
            job,
            train=train,
            shards_dir=str(root / job.shards_dir),
            stats_path=str(root / job.stats_path),
            store_dir=str(root / job.store_dir),
        )
        live = scratch / "dvclive"
        wall, cpu = time.perf_counter(), time.process_time()
        with timed_backward_and_clip():
            result = run_training(job, live_dir=str(live), trainer_cls=ProfiledTrainer)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if result.step != start_step + args.steps:
            raise RuntimeError(f"expected to stop at step {start_step + args.steps}, got {result.step}")
        threads_cpu = thread_cpu_seconds()
    steps = args.steps
    # the first steps warm up allocator and caches: medians over the records skip nothing, means count all
    parts: dict[str, dict[str, float | None]] = {}
    for name in (*STEP_PARTS, "rest_of_step", "step"):
        walls = [rec_part(r, name)[0] for r in CLOCK.steps]
        cpus = [rec_part(r, name)[1] for r in CLOCK.steps]
        parts[name] = {
            "wall_ms": 1e3 * sum(walls) / steps,
            "cpu_ms": 1e3 * sum(cpus) / steps,
            "wall_ms_median": 1e3 * statistics.median(walls),
            "cpu_ms_median": 1e3 * statistics.median(cpus),
        }
    for name in LOOP_PARTS:
        parts[name] = {"wall_ms": 1e3 * CLOCK.wall[name] / steps, "cpu_ms": 1e3 * CLOCK.cpu[name] / steps}
    parts["prefetch_thread"] = {"wall_ms": None, "cpu_ms": 1e3 * CLOCK.thread["prefetch_thread"] / steps}
    step_wall = CLOCK.wall["step"]
    return {
        "steps": steps,
        "start_step": start_step,
        "threads": torch.get_num_threads(),
        "flush_denormal": args.flush_denormal,
        "bare": args.bare,
        "prefetch": args.prefetch,
        "stage_wall_s": wall,
        "stage_cpu_s": cpu,
        "steps_per_s_in_steps": steps / step_wall,
        "stage_steps_per_s_median": getattr(result, "steps_per_s", None),  # the run record (older code: none)
        "parts_ms_per_step": parts,
        "thread_cpu_s": threads_cpu,
        "load_average": os.getloadavg(),
    }


def print_profile(report: dict) -> None:
    parts = report["parts_ms_per_step"]
    step = parts["step"]["wall_ms"]
    print(
        f"{'part':<16} {'wall ms/step':>13} {'share':>7} {'cpu ms/step':>12} {'median wall':>12} {'median cpu':>11}"
    )
    for name, row in parts.items():
        wall = row["wall_ms"]
        share = (
            f"{100 * wall / step:6.1f}%" if wall is not None and name in (*STEP_PARTS, "rest_of_step") else ""
        )
        wall_s = f"{wall:13.2f}" if wall is not None else f"{'':>13}"
        medians = (
            f"{row['wall_ms_median']:12.2f} {row['cpu_ms_median']:11.2f}" if "wall_ms_median" in row else ""
        )
        print(f"{name:<16} {wall_s} {share:>7} {row['cpu_ms']:12.2f} {medians}")
    busy = [f"{name} {cpu:.1f}s" for name, cpu in report["thread_cpu_s"] if cpu > 0.05]
    print("threads (CPU s over the whole run):", ", ".join(busy))
    print(
        f"steps/s inside train_step {report['steps_per_s_in_steps']:.2f}; stage median (run record) "
        f"{report['stage_steps_per_s_median']}; stage wall {report['stage_wall_s']:.1f} s; "
        f"load {report['load_average']}"
    )


def compare(args: argparse.Namespace) -> None:
    """Interleaved rounds of fresh processes, one per variant; medians of each figure per variant."""
    variants = []
    for spec in args.compare:
        name, _, rest = spec.partition("=")
        tokens = shlex.split(rest)
        env = dict(os.environ)
        if USER_OMP_WAIT_POLICY is None:
            env.pop("OMP_WAIT_POLICY", None)
        extra = []
        for token in tokens:
            key, sep, value = token.partition("=")
            if sep and key.isupper():
                env[key] = value
            else:
                extra.append(token)
        variants.append((name, extra, env))
    results: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
    base = [sys.executable, str(Path(__file__).resolve()), "--root", args.root, "--params", args.params]
    base += ["--steps", str(args.steps)] + (["--resume", args.resume] if args.resume else [])
    base += ["--val-every", str(args.val_every)] if args.val_every else []
    for round_index in range(args.rounds):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for name, extra, env in order:
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                cmd = [*base, *extra, "--out", out.name]
                subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                report = json.loads(Path(out.name).read_text())
            results[name].append(report)
            print(
                f"round {round_index} {name}: {report['steps_per_s_in_steps']:.2f} steps/s in step, "
                f"step cpu {report['parts_ms_per_step']['step']['cpu_ms']:.1f} ms, load "
                f"{report['load_average'][0]:.2f}",
                flush=True,
            )
    summary = {}
    for name, reports in results.items():
        med = {
            "steps_per_s_in_steps": statistics.median(r["steps_per_s_in_steps"] for r in reports),
            "stage_steps_per_s": statistics.median(r["stage_steps_per_s_median"] or 0 for r in reports),
            "stage_wall_s": statistics.median(r["stage_wall_s"] for r in reports),
        }
        for part in reports[0]["parts_ms_per_step"]:
            for key in ("wall_ms", "cpu_ms"):
                values = [r["parts_ms_per_step"][part][key] for r in reports]
                if None not in values:
                    med[f"{part}.{key}"] = statistics.median(values)
        summary[name] = med
    names = list(summary)
    print(f"{'median over ' + str(args.rounds) + ' rounds':<28}" + "".join(f"{n:>14}" for n in names))
    for key in summary[names[0]]:
        print(f"{key:<28}" + "".join(f"{summary[n].get(key, float('nan')):14.2f}" for n in names))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "runs": results}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=".", help="checkout whose data/ holds the packed latents and stats")
    parser.add_argument("--params", default="params.yaml", help="params file, relative to --root")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--resume", default="", help="checkpoint run directory to start from (copied)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = stage's choice)")
    parser.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True) first")
    parser.add_argument("--prefetch", type=int, default=-1, help="batches prefetched (-1 = the stage's)")
    parser.add_argument("--bare", action="store_true", help="bare loop: forward, backward, AdamW only")
    parser.add_argument("--val-every", type=int, default=0, help="override train.val_every/ckpt_every")
    parser.add_argument("--compare", nargs="*", default=None, help="NAME=ARGS variants, run interleaved")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.compare:
        compare(args)
        return
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    global BARE
    BARE = args.bare
    if args.prefetch >= 0:
        if isinstance(training_setup.PREFETCH_BATCHES, int):  # checkouts before the per-device table
            training_setup.PREFETCH_BATCHES = args.prefetch
        else:
            training_setup.PREFETCH_BATCHES = {"cpu": args.prefetch}
    report = profile(args)
    print_profile(report)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
