"""The fine-tuning path end to end on a tiny config: a user's folder of audio + captions.csv → prepare → separate →
encode → stats → pack → train a base → train again with ``train.init_from`` + LoRA (adapter export), replaying the
base's packed data (``train.replay``) → generate.

Real stages (their ``main``), real offline components (mel codec, the packaged all-MiniLM-L6-v2), peft; seconds of
audio and a handful of steps.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml

from model.datasets.synthetic import synthesize
from model.flow.trained import ADAPTER_FILE, artefact_sha256, load_trained
from pipelines import encode, generate, pack, prepare, separate, stats, train

# names chosen so that the path hash puts 5 files in train, 1 in validation and 2 in test
CLIPS = (
    ("jam-1/b.wav", "rock", ("guitar", "drums"), "energetic"),
    ("jam-2/c.wav", "rock", ("bass",), "happy"),
    ("jam-2/d.wav", "rock", ("piano",), "calm"),
    ("e.wav", "rock", ("strings", "drums"), "sad"),
    ("g.wav", "rock", ("synthesizer",), "happy"),
    ("f.wav", "rock", ("guitar",), "calm"),
    ("d.wav", "rock", ("drums", "bass"), "energetic"),
    ("n.wav", "rock", ("piano", "strings"), "sad"),
)
TINY = {
    "data": {
        "source": "folder",
        "folder": {"root": "my-music", "validation_share": 0.25, "test_share": 0.25},
    },
    "codec": {"mel": {"n_mels": 16, "griffin_lim_iters": 2, "inversion_iters": 2}},
    "encode": {"workers": 1, "shard_rows": 4, "batch_size": 4},
    "text": {"max_length": 16},
    "model": {"hidden": 16, "depth": 1, "d_state": 4, "heads": 2, "time_dim": 16, "scan_backend": "torch"},
    "train": {
        "steps": 3,
        "batch_size": 4,
        "frames": 16,
        "val_every": 3,
        "val_batch_size": 4,
        "ckpt_every": 3,
        "log_every": 1,
        "warmup": 1,
        "out_dir": "models/base",
    },
    "generate": {"n_prompts": 2, "seeds": 1, "steps": 2, "batch_size": 2, "device": "cpu"},
}


def write_folder(root):
    rows = []
    for i, (rel, genre, instruments, mood) in enumerate(CLIPS):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(
            str(root / rel), synthesize(genre, instruments, mood, 3.0, [7, i]).T, 44100, subtype="PCM_16"
        )
        tags = " ".join(
            [f"genre---{genre}", *(f"instrument---{x}" for x in instruments), f"mood/theme---{mood}"]
        )
        rows.append(
            {"path": rel, "caption": f"A {mood} {genre} take with {' and '.join(instruments)}.", "tags": tags}
        )
    with (root / "captions.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "caption", "tags"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
def test_folder_to_lora_fine_tune_to_generated_audio(tmp_path, monkeypatch, ray_instance):
    monkeypatch.chdir(tmp_path)
    write_folder(tmp_path / "my-music")
    base_params = tmp_path / "params-base.yaml"
    base_params.write_text(yaml.safe_dump(TINY))
    args = ["--params", str(base_params)]
    for stage in (prepare, separate, encode, stats, pack):
        stage.main(args)
    tracks = pq.read_table("data/prepared/tracks.parquet").to_pylist()
    assert len(tracks) == len(CLIPS) and sorted(t["split"] for t in tracks).count("train") == 5
    assert {t["split"] for t in tracks} == {"train", "validation", "test"}
    assert all(t["genre"] == ["rock"] and t["caption"].startswith("A ") for t in tracks)
    train.main(args)
    shutil.copytree("data/latents/store", "data/base-store")  # the base's data, kept aside for replay

    tuned = json.loads(json.dumps(TINY))
    tuned["train"].update(
        {
            "init_from": "models/base",
            "out_dir": "models/final",
            "lora": {"rank": 2, "alpha": 4.0, "merge": False},
            "replay": {"store": "data/base-store", "share": 0.5},
        }
    )
    tuned_params = tmp_path / "params.yaml"
    tuned_params.write_text(yaml.safe_dump(tuned))
    train.main(["--params", str(tuned_params)])
    final = load_trained("models/final")
    assert (tmp_path / "models/final" / ADAPTER_FILE).exists()
    assert final.info["adapter"]["base_sha256"] == artefact_sha256("models/base")
    assert final.stats == load_trained("models/base").stats  # train.init_stats: base
    assert final.info["lora"]["trainable"] < final.info["parameters"]
    assert final.info["replay"]["clips"] == 5 and final.info["replay"]["share"] == 0.5

    generate.main(["--params", str(tuned_params)])
    manifest = pq.read_table("generated/manifest.parquet").to_pylist()
    test_ids = {t["track_id"] for t in tracks if t["split"] == "test"}
    assert {m["prompt_id"] for m in manifest} <= test_ids and len(manifest) == min(2, len(test_ids))
    for row in manifest:
        audio, sr = sf.read(row["path"], dtype="float32", always_2d=True)
        assert sr == 44100 and audio.shape == (441000, 2) and np.isfinite(audio).all()
