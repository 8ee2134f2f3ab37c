"""The oracle study's stand-in generators: tag matching, and a full run on a small evaluate world."""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import pytest
import yaml

from evaluation.metrics.audio_sets import DatasetClip
from tests.evaluation.synthetic_fixture import build_world

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import oracle_study  # noqa: E402


def _clip(tid, genre, instruments, mood):
    return DatasetClip(
        tid, f"{tid}.wav", "", {"genre": (genre,), "instrument": tuple(instruments), "mood": (mood,)}
    )


def test_pick_clips_prefers_the_best_tag_overlap_and_is_seeded():
    pool = [
        _clip("a", "rock", ["guitar"], "sad"),
        _clip("b", "jazz", ["piano", "bass"], "calm"),
        _clip("c", "jazz", ["piano"], "calm"),
        _clip("d", "jazz", ["piano"], "happy"),
    ]
    want = {"genre": ["jazz"], "instrument": ["piano"], "mood": ["calm"]}
    picked = oracle_study.pick_clips(want, pool, 2, random.Random(0))
    assert [c.track_id for c in picked] == ["c", "b"]  # exact match (1.0), then 3/4 (b) before 2/4 (d)
    again = oracle_study.pick_clips(want, pool, 2, random.Random(0))
    assert picked == again
    rand = [oracle_study.pick_clips(want, pool, 2, random.Random(s), by_tags=False) for s in range(6)]
    assert len({tuple(c.track_id for c in r) for r in rand}) > 1  # random picks ignore the tags


def test_a_root_without_a_finished_run_is_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="params.yaml"):
        oracle_study.run_study(tmp_path, 2, 0, tmp_path / "work")
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {"prepared_dir": "data/prepared"},
                "separate": {"out_dir": "data/instrumental"},
                "generate": {"out_dir": "generated"},
            }
        )
    )
    with pytest.raises(FileNotFoundError, match="make repro"):
        oracle_study.run_study(tmp_path, 2, 0, tmp_path / "work")


def test_study_scores_tag_matched_real_audio_above_random_audio(tmp_path, monkeypatch):
    build_world(tmp_path, n_tracks=24, seconds=10.0, generator="faithful", n_seeds=1)
    params = {
        "data": {"prepared_dir": "data/prepared"},
        "separate": {"out_dir": "data/instrumental"},
        "generate": {"out_dir": "generated"},
        "codec": {"name": "mel", "mel": {"griffin_lim_iters": 4}},
        "evaluate": {"tagger_steps": 60, "local_clap_steps": 40, "cache_dir": "cache", "out_dir": "reports"},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "study.json"
    cwd = os.getcwd()
    try:
        oracle_study.main(["--root", str(tmp_path), "--seeds", "1", "--out", str(out)])
    finally:
        os.chdir(cwd)
    study = json.loads(out.read_text())
    oracles = study["oracles"]
    assert set(oracles) == set(oracle_study.ORACLES)
    assert study["this_run"] is None  # no evaluate run in this world
    # the tagger hears the prompts' tags in tag-matched real audio, not in random real audio
    assert oracles["retrieval_raw"]["ccs"] > oracles["random_codec"]["ccs"] + 0.2
    assert oracles["retrieval_codec"]["ccs_margin"] > oracles["random_codec"]["ccs_margin"]
    # the codec costs fidelity: the same clips score a larger FAD after the round trip
    assert oracles["retrieval_codec"]["fad"] > oracles["retrieval_raw"]["fad"]
    for m in oracles.values():
        assert m["ceiling"]["fad"] >= 0
