"""Training memory and speed against data size: peak RSS and steps/s of the real train process (packed store,
memory-mapped crops, background batch assembly) on a dataset the size of the embedded one and on one N x larger.

Both datasets are random float16 latents in the shard format with the embedded shape (params.yaml: ``n_mels``
channels, ``encode.clip_seconds`` of frames, one clip per synthetic track), packed by the pack stage's code; each
training run is a fresh process (model and train batch/frames from params.yaml, the word-hash text encoder of the
tests, so no weights are needed). The runs alternate (small, large, small, large, ...) so that the machine's load
hits both alike; medians are reported. Also reported: the time ``next()`` waited for a batch per step (the
loading time the step sees) and the time spent assembling a batch in the background, against the step time.

Run: .venv/bin/python bench/bench_train_memory.py  ->  prints a table, writes bench/results/train_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.data.store import pack_store  # noqa: E402
from tests.model.training.fixtures import TRAIN_AND_MEASURE, write_random_shards  # noqa: E402

LOADING = re.compile(
    r"data loading: ([\d.]+) ms/step waited, ([\d.]+) ms/batch assembled (?:in the background|on the training "
    r"thread); "
    r"([\d.]+) ms/step"
)


def embedded_shape(params: dict) -> tuple[int, int, int]:
    """(clips, channels, frames per clip) of the embedded default's training data."""
    mel = params["codec"]["mel"]
    frames = int(round(float(params["encode"]["clip_seconds"]) * mel["sample_rate"] / mel["hop"]))
    clips = int(params["data"]["synthetic"]["n_tracks"]) * int(params["encode"]["max_clips_per_track"])
    return clips, int(mel["n_mels"]), frames


def run_params(params: dict, root: Path, steps: int) -> dict:
    train = {
        **params["train"],
        "steps": steps,
        "log_every": max(1, steps // 6),
        "val_every": steps,
        "ckpt_every": steps,
        "val_clips": 16,
        "resume": False,
        "ckpt_dir": str(root / "checkpoints"),
        "out_dir": str(root / "final"),
        "workers": 1,
        "use_gpu": False,
    }
    model = {**params["model"], "scan_backend": "torch"}
    return {
        **params,
        "model": model,
        "train": train,
        "encode": {
            **params["encode"],
            "out_dir": str(root / "shards"),
            "stats_path": str(root / "stats.json"),
        },
        "pack": {"out_dir": str(root / "store")},
    }


def measure(root: Path, threads: int) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": str(threads),
    }
    live = root / "dvclive"
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_AND_MEASURE, str(root / "params.yaml"), str(live)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-4000:])
    waited, assembled, step_ms = map(float, LOADING.findall(done.stderr)[-1])
    return {
        "peak_rss_bytes": int(done.stdout.strip().splitlines()[-1]),
        # the median over log windows (TrainResult.steps_per_s; steps/s is not a DVCLive metric)
        "steps_per_s": float(re.findall(r"^steps_per_s (\S+)$", done.stdout, re.M)[-1]),
        "wait_ms_per_step": waited,
        "assemble_ms_per_batch": assembled,
        "step_ms": step_ms,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument(
        "--factor", type=int, default=8, help="size of the large dataset, in embedded datasets"
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/results/train_memory.json")
    args = parser.parse_args(argv)
    params = yaml.safe_load(Path(args.params).read_text())
    clips, dim, frames = embedded_shape(params)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-memory-") as tmp:
        sizes = {"embedded": clips, f"{args.factor}x": clips * args.factor}
        for name, n in sizes.items():
            root = Path(tmp) / name
            data_bytes = write_random_shards(root, n, dim=dim, width=frames, n_val=16)
            started = time.perf_counter()
            pack_store(root / "shards", root / "store")
            results[name] = {
                "train_clips": n,
                "latent_bytes": data_bytes,
                "pack_s": time.perf_counter() - started,
                "runs": [],
            }
            (root / "params.yaml").write_text(yaml.safe_dump(run_params(params, root, args.steps)))
        for _ in range(args.repeats):
            for name in sizes:
                results[name]["runs"].append(measure(Path(tmp) / name, args.threads))
    rows = []
    for name, r in results.items():
        runs = r.pop("runs")
        rows.append(
            {
                "dataset": name,
                **r,
                **{k: statistics.median(run[k] for run in runs) for k in runs[0]},
                "runs": runs,
            }
        )
    base = rows[0]
    for row in rows:
        row["rss_growth"] = row["peak_rss_bytes"] / base["peak_rss_bytes"] - 1
        row["steps_per_s_change"] = row["steps_per_s"] / base["steps_per_s"] - 1
    print(
        f"{'dataset':<10} {'clips':>7} {'latents MB':>11} {'peak RSS MB':>12} {'RSS growth':>11} {'steps/s':>8} "
        f"{'change':>7} {'wait ms':>8} {'load ms':>8} {'step ms':>8}"
    )
    for r in rows:
        print(
            f"{r['dataset']:<10} {r['train_clips']:>7} {r['latent_bytes'] / 2**20:>11.1f} "
            f"{r['peak_rss_bytes'] / 2**20:>12.1f} {r['rss_growth']:>+11.1%} {r['steps_per_s']:>8.2f} "
            f"{r['steps_per_s_change']:>+7.1%} {r['wait_ms_per_step']:>8.2f} {r['assemble_ms_per_batch']:>8.2f} "
            f"{r['step_ms']:>8.1f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": "cpu",
                "threads": args.threads,
                "machine": platform.machine(),
                "load_average": os.getloadavg(),
                "steps": args.steps,
                "repeats": args.repeats,
                "note": "medians over alternating runs; wait = time next() blocked per step, load = "
                "time assembling one batch in the background thread",
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
