"""Encode throughput of the mel codec (params.yaml ``codec:``): seconds of audio encoded per wall second.

Fixture: synthetic 44.1 kHz stereo FLAC tracks (``N_TRACKS`` × ``TRACK_SECONDS``), cut by the params' clip policy.
Two measurements:
  * ``single_process``: ``encode_clips`` in this process, one thread (decode + resample + mono + mel + float16),
    i.e. the work of one CPU actor;
  * ``ray_pipeline``: the real ``run_encode`` (Ray Data, ``WORKERS`` CPU actors, shards written), timed from the
    start of the Ray job to the last shard, with Ray's own start-up reported separately.
Real-time factor = audio seconds / wall seconds; for the pipeline also the steady state after the first batch
arrives (actor start-up, i.e. worker processes importing torch, is a fixed cost per run). Target (issue 4): >= 20x real time on 2 cores.
The machine is shared, so the load average at start is recorded beside the figures.
Writes bench/results/encode.json.

    .venv/bin/python bench/bench_encode.py
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.codec import build_codec  # noqa: E402
from model.codec.encoding import describe_codec, encode_clips, run_encode  # noqa: E402
from model.data.clips import ClipPolicy, TrackSource, plan_clips  # noqa: E402
from model.runtime.ray_session import ray_session  # noqa: E402
from pipelines.common.params import config_of, load_params  # noqa: E402

N_TRACKS = 96
TRACK_SECONDS = 12.0
WORKERS = 2
OUT = Path("bench/results/encode.json")


def make_tracks(root: Path) -> list[TrackSource]:
    rng = np.random.default_rng(0)
    sr = 44100
    t = np.arange(int(TRACK_SECONDS * sr)) / sr
    tracks = []
    for i in range(N_TRACKS):
        tone = 0.2 * np.sin(2 * np.pi * (110 + 10 * i) * t) + 0.02 * rng.standard_normal(t.size)
        path = root / f"{i:03d}.flac"
        sf.write(path, np.stack([tone, np.roll(tone, 7)], axis=1).astype(np.float32), sr, subtype="PCM_16")
        tracks.append(TrackSource(f"track_{i:07d}", str(path), TRACK_SECONDS, split="train"))
    return tracks


def main() -> None:
    torch.set_num_threads(1)
    params = load_params()
    codec_params = params.codec.model_dump()
    policy = config_of(ClipPolicy, params.encode)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tracks = make_tracks(root)
        plan = plan_clips(tracks, policy, shard_rows=16, batch_size=params.encode.batch_size)
        clips = [c for shard in plan.shards for c in shard]
        audio_s = sum(c.valid_s for c in clips)
        codec = build_codec(codec_params, "cpu")
        meta = describe_codec(codec, policy.clip_seconds)

        encode_clips(codec, list(clips[:2]), policy.clip_seconds)  # warm-up
        start = time.perf_counter()
        for s in range(len(plan.shards)):
            for batch in plan.batches(s):
                encode_clips(codec, list(batch), policy.clip_seconds)
        single = time.perf_counter() - start

        start = time.perf_counter()
        with ray_session(num_cpus=WORKERS):
            ray_start = time.perf_counter() - start
            start = time.perf_counter()
            factory = functools.partial(build_codec, codec_params, "cpu")
            summary = run_encode(plan, root / "shards", factory, meta, policy.clip_seconds, workers=WORKERS)
            pipeline = time.perf_counter() - start
    clip_s = audio_s / len(clips)
    steady = summary.clips_after_startup * clip_s / max(summary.wall_s - summary.startup_s, 1e-9)

    result = {
        "codec": meta.codec,
        "latent_shape": list(meta.latent_shape),
        "clips": len(clips),
        "audio_seconds": audio_s,
        "single_process": {"wall_s": single, "realtime_factor": audio_s / single, "threads": 1},
        "ray_pipeline": {
            "workers": WORKERS,
            "wall_s": pipeline,
            "realtime_factor": audio_s / pipeline,
            "ray_init_s": ray_start,
            "actor_startup_s": summary.startup_s,
            "steady_state_realtime_factor": steady,
        },
        "target_realtime_factor": 20.0,
        "load_average_1min_at_start": load,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'measurement':<28}{'wall s':>10}{'x real time':>14}")
    print(f"{'single process, 1 thread':<28}{single:>10.2f}{audio_s / single:>14.1f}")
    print(f"{f'Ray Data, {WORKERS} actors':<28}{pipeline:>10.2f}{audio_s / pipeline:>14.1f}")
    print(f"{'  after actor start-up':<28}{summary.wall_s - summary.startup_s:>10.2f}{steady:>14.1f}")
    print(
        f"({len(clips)} clips, {audio_s:.0f} s of audio; Ray start-up {ray_start:.1f} s not included; "
        f"load average {load:.1f}) -> {OUT}"
    )


if __name__ == "__main__":
    main()
