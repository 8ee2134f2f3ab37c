"""A small on-disk world for the evaluate stage: synthetic tracks, an instrumental manifest and generated clips.

``build_world(root, n_tracks, generator)`` writes (paths relative to ``root``)::

    data/prepared/tracks.parquet          track_id, audio_path, duration, genre, instrument, mood, caption, split
    data/instrumental/manifest.parquet    track_id, path, seconds, status (passthrough)
    generated/prompts.jsonl + manifest.parquet + <prompt_id>/seed-<k>.wav

``generator="faithful"`` renders each test prompt's own tags with fresh seeds (a model that follows its text);
``"ignores_text"`` renders every prompt with the tags of one fixed other track (a model that ignores the text).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from evaluation.challenge.prompts import Prompt, save_prompts
from model.audio.io import write_audio
from model.datasets.captions import caption
from model.datasets.synthetic import synthesize, track_spec


def build_world(
    root: Path, n_tracks: int = 40, seconds: float = 10.0, generator: str = "faithful", n_seeds: int = 2
) -> None:
    rows, manifest = [], []
    for i in range(n_tracks):
        spec = track_spec(i, seed=0)
        path = root / "data" / "prepared" / "audio" / f"{spec.track_id}.wav"
        write_audio(path, synthesize(spec.genre, spec.instruments, spec.mood, seconds, [0, i]), 44100)
        rows.append(
            {
                "track_id": spec.track_id,
                "audio_path": str(path),
                "duration": seconds,
                "genre": [spec.genre],
                "instrument": list(spec.instruments),
                "mood": [spec.mood],
                "caption": caption(spec.track_id, [spec.genre], spec.instruments, [spec.mood]),
                "split": spec.split,
            }
        )
        manifest.append(
            {"track_id": spec.track_id, "path": str(path), "seconds": seconds, "status": "passthrough"}
        )
    pq.write_table(pa.Table.from_pylist(rows), _mk(root / "data" / "prepared" / "tracks.parquet"))
    pq.write_table(pa.Table.from_pylist(manifest), _mk(root / "data" / "instrumental" / "manifest.parquet"))

    test = [r for r in rows if r["split"] == "test"]
    prompts = [
        Prompt(
            r["track_id"],
            r["caption"],
            {"genre": tuple(r["genre"]), "instrument": tuple(r["instrument"]), "mood": tuple(r["mood"])},
        )
        for r in test
    ]
    gen_dir = root / "generated"
    save_prompts(_mk(gen_dir / "prompts.jsonl"), prompts)
    fixed = rows[0]
    generated = []
    for p_index, prompt in enumerate(prompts):
        for seed in range(n_seeds):
            if generator == "faithful":
                tags = (
                    prompt.concepts["genre"][0],
                    prompt.concepts["instrument"],
                    prompt.concepts["mood"][0],
                )
            else:
                tags = (fixed["genre"][0], tuple(fixed["instrument"]), fixed["mood"][0])
            audio = synthesize(*tags, seconds, [1, p_index, seed])
            path = gen_dir / prompt.prompt_id / f"seed-{seed}.wav"
            write_audio(path, audio, 44100)
            generated.append(
                {
                    "prompt_id": prompt.prompt_id,
                    "seed": seed,
                    "path": str(path),
                    "seconds": seconds,
                    "sample_rate": 44100,
                    "caption": prompt.caption,
                }
            )
    pq.write_table(pa.Table.from_pylist(generated), gen_dir / "manifest.parquet")


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
