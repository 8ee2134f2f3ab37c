"""The metrics tell good from bad on a fixture where the answer is known.

One small synthetic world (tracks whose tags shape the audio), scored with the offline embedder, text–audio model
and judge, for several "generators" of the test prompts:

- ``own``: each prompt's own held-out reference audio (the best any model could do);
- ``other``: the audio of training tracks with other tags (music, but for other prompts);
- ``noise``: white noise;
- ``ignores_text``: the fixture's generator that renders every prompt with one fixed track's tags.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluation.challenge.prompts import save_prompts
from evaluation.metrics.audio_sets import read_generated
from evaluation.scoring.evaluator import run_evaluation
from evaluation.scoring.settings import EvaluateSettings
from model.audio.io import write_audio
from tests.defaults import config
from tests.evaluation.synthetic_fixture import build_world

SR = 44100
SECONDS = 10.0


def _generated_dir(root: Path, name: str, audio_for: dict[str, list[np.ndarray] | list[Path]]) -> str:
    """A generate-stage output dir with the world's prompts; ``audio_for[prompt_id]`` = one entry per seed."""
    prompts, _ = read_generated(root / "generated")
    out = root / name
    save_prompts(out / "prompts.jsonl", prompts)
    rows = []
    for p in prompts:
        for seed, audio in enumerate(audio_for[p.prompt_id]):
            path = out / p.prompt_id / f"seed-{seed}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(audio, Path):
                shutil.copyfile(audio, path)
            else:
                write_audio(path, audio, SR)
            rows.append(
                {
                    "prompt_id": p.prompt_id,
                    "seed": seed,
                    "path": str(path),
                    "seconds": SECONDS,
                    "sample_rate": SR,
                    "caption": p.caption,
                }
            )
    pq.write_table(pa.Table.from_pylist(rows), out / "manifest.parquet")
    return str(out)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("discriminate")
    build_world(root, n_tracks=30, seconds=SECONDS, generator="ignores_text", n_seeds=1)
    tracks = pq.read_table(root / "data/prepared/tracks.parquet").to_pylist()
    prompts, _ = read_generated(root / "generated")
    by_id = {t["track_id"]: t for t in tracks}
    train = [t for t in tracks if t["split"] == "train"]
    own, other = {}, {}
    for p in prompts:
        me = by_id[p.prompt_id]
        own[p.prompt_id] = [Path(me["audio_path"])]
        unlike = [
            t
            for t in train
            if t["genre"] != me["genre"]
            and t["mood"] != me["mood"]
            and not set(t["instrument"]) & set(me["instrument"])
        ]
        other[p.prompt_id] = [Path(unlike[len(other) % len(unlike)]["audio_path"])]
    rng = np.random.default_rng(0)
    noise = {
        p.prompt_id: [0.1 * rng.standard_normal((2, int(SR * SECONDS))).astype(np.float32)] for p in prompts
    }
    dirs = {
        "own": _generated_dir(root, "gen_own", own),
        "other": _generated_dir(root, "gen_other", other),
        "noise": _generated_dir(root, "gen_noise", noise),
        "ignores_text": str(root / "generated"),
    }
    return root, dirs


def _copy_generated(root: Path, src: str, name: str) -> tuple[str, list]:
    """A copy of generated dir ``src`` (its manifest pointing at the copies); (dir, its clips)."""
    _, clips = read_generated(src)
    audio_for: dict[str, list[Path]] = {}
    for c in sorted(clips, key=lambda c: (c.prompt_id, c.seed)):
        audio_for.setdefault(c.prompt_id, []).append(Path(c.path))
    out = _generated_dir(root, name, audio_for)
    return out, read_generated(out)[1]


def _settings(root: Path, **overrides) -> EvaluateSettings:
    base = {
        "tagger_steps": 200,
        "local_clap_steps": 200,
        "cache_dir": str(root / "cache"),
        "out_dir": str(root / "reports"),
    }
    return config(EvaluateSettings, "evaluate", **{**base, **overrides})


def _evaluate(root: Path, generated: str, **overrides):
    return run_evaluation(
        _settings(root, **overrides),
        generated,
        str(root / "data/prepared/tracks.parquet"),
        str(root / "data/instrumental/manifest.parquet"),
    )


@pytest.fixture(scope="module")
def scored(world):
    root, dirs = world
    return {name: _evaluate(root, path).metrics for name, path in dirs.items()}


@pytest.mark.slow
def test_fad_orders_own_reference_other_music_and_noise(scored):
    fad = {name: m["fad"] for name, m in scored.items()}
    assert abs(fad["own"]) < 1e-3  # the generated set *is* the reference set
    assert fad["own"] < fad["other"] < fad["noise"], fad
    assert fad["noise"] > 2 * fad["other"], fad


@pytest.mark.slow
def test_ccs_of_own_prompts_beats_shuffled_prompts(scored):
    own, ignores = scored["own"], scored["ignores_text"]
    assert own["ccs_margin"] > 0.15, own  # ccs_margin = ccs - ccs on shuffled prompts
    assert own["ccs"] > scored["other"]["ccs"] + 0.2
    # a model that ignores its text cannot gain from the right prompt: the margin is no better than chance
    assert own["ccs_margin"] > ignores["ccs_margin"] + 0.15 and abs(ignores["ccs_margin"]) < 0.15, ignores


@pytest.mark.slow
def test_clap_of_own_prompts_beats_other_audio_and_text_ignoring_model(scored):
    clap = {name: m["clap"] for name, m in scored.items()}
    assert clap["own"] > clap["other"] + 0.2, clap
    assert clap["own"] > clap["ignores_text"] + 0.1, clap
    assert clap["own"] > clap["noise"] + 0.1, clap


@pytest.mark.slow
def test_reference_dir_replaces_the_test_split(world, scored):
    root, dirs = world
    ref = root / "refs"
    prompts, clips = read_generated(dirs["own"])
    for c in clips:
        (ref / c.prompt_id).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(c.path, ref / c.prompt_id / "ref.wav")
    same = _evaluate(root, dirs["own"], reference_dir=str(ref))
    assert same.metrics["fad"] == pytest.approx(scored["own"]["fad"], abs=1e-6)
    assert same.details["reference"]["source"] == str(ref) and same.details["reference"]["n_files"] == len(
        clips
    )
    noise_ref = root / "noise_refs"
    shutil.copytree(dirs["noise"], noise_ref, ignore=shutil.ignore_patterns("*.jsonl", "*.parquet"))
    against_noise = _evaluate(root, dirs["own"], reference_dir=str(noise_ref)).metrics
    assert against_noise["fad"] > 2 * scored["other"]["fad"]


@pytest.mark.slow
def test_unreadable_generated_and_reference_files_are_rejected_by_name(world, scored):
    root, dirs = world
    gen, clips = _copy_generated(root, dirs["own"], "gen_damaged")
    bad_gen = Path(clips[0].path)
    bad_gen.write_bytes(b"RIFF....not audio")
    ref = root / "refs_damaged"
    shutil.copytree(dirs["own"], ref, ignore=shutil.ignore_patterns("*.jsonl", "*.parquet"))
    (ref / "broken.wav").write_bytes(b"")
    out = _evaluate(root, gen, reference_dir=str(ref))
    rejected = {r["path"] for r in out.rejects}
    assert str(bad_gen) in rejected and str(ref / "broken.wav") in rejected
    assert out.details["n_rejected"] == 2 and out.details["sets"]["all_seeds"]["n_clips"] == len(clips) - 1
    assert np.isfinite(out.metrics["fad"])


@pytest.mark.slow
def test_fewer_than_two_readable_files_is_an_error(world):
    root, dirs = world
    gen, clips = _copy_generated(root, dirs["own"], "gen_mostly_broken")
    for c in clips[1:]:
        Path(c.path).write_bytes(b"")
    with pytest.raises(ValueError, match="only 1 readable generated clip"):
        _evaluate(root, gen)
    ref = root / "refs_one"
    ref.mkdir()
    shutil.copyfile(clips[0].path, ref / "good.wav")
    (ref / "bad.flac").write_bytes(b"fLaC")
    with pytest.raises(ValueError, match=r"reference set: only 1 readable file\(s\) of 2"):
        _evaluate(root, dirs["own"], reference_dir=str(ref), cache_dir=str(root / "cache_one"))
