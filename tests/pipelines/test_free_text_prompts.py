"""The challenge's own prompt format end to end: an ``id,prompt`` CSV of free-text captions (no concepts, no tag
syntax) through generate, evaluate and submit, on the tiny trained model and the tiny evaluation world."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from evaluation.challenge.package import packaged_pcm, pcm_sha256
from evaluation.challenge.prompts import load_prompts
from evaluation.challenge.submission import SubmissionRules, validate_submission
from pipelines.check_submission import main as check_main
from pipelines.evaluate import run_stage as evaluate
from pipelines.generate import run_stage as generate
from pipelines.submit import run_stage as submit
from tests.defaults import config, params
from tests.evaluation.synthetic_fixture import build_world
from tests.pipelines.conftest import CODEC

# everyday captions; what each names (and nothing else), by category
CAPTIONS = {
    "morning": ("A relaxing piano piece for a rainy afternoon", {"instrument": ["piano"], "mood": ["relaxing"]}),
    "strings": ("Sad violin melody over soft strings", {"instrument": ["violin", "strings"], "mood": ["sad", "soft"]}),
    "garage": (
        "Energetic rock song with electric guitars and drums",
        {"genre": ["rock"], "instrument": ["electricguitar", "drums"], "mood": ["energetic"]},
    ),
    "cafe": (
        "Mellow jazz with a smooth saxophone",
        {"genre": ["jazz"], "instrument": ["saxophone"], "mood": ["mellow"]},
    ),
    "rave": ("Drum and bass that feels dark and fast", {"genre": ["drumnbass"], "mood": ["dark", "fast"]}),
    "yoga": ("Calm ambient music for meditation", {"genre": ["ambient"], "mood": ["calm", "meditative"]}),
    "roadtrip": ("Happy acoustic guitar tune for summer", {"instrument": ["acousticguitar"], "mood": ["happy", "summer"]}),
    "blockbuster": ("Epic orchestral music for a movie trailer", {"genre": ["orchestral"], "mood": ["epic", "movie", "trailer"]}),
    "street": ("Hip-hop beat with a deep bass line, no vocals", {"genre": ["hiphop"], "instrument": ["beat", "bass"], "mood": ["deep"]}),
    "seaside": ("The sound of a quiet morning by the sea", {}),
}  # fmt: skip


def _csv(path):
    lines = ["id,prompt", *(f'{pid},"{caption}"' for pid, (caption, _) in CAPTIONS.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_named_genre_instrument_and_mood_is_found(tmp_path):
    prompts = load_prompts(_csv(tmp_path / "prompts.csv"))
    assert [p.prompt_id for p in prompts] == list(CAPTIONS)
    for p in prompts:
        expected = {c: tuple(v) for c, v in CAPTIONS[p.prompt_id][1].items()}
        assert dict(p.concepts) == expected, p.caption
        assert p.concepts_from == "caption" and p.split == "ranked"


@pytest.mark.slow
def test_a_free_text_csv_runs_through_generate_evaluate_and_submit(model_dir, tmp_path):
    build_world(
        tmp_path, n_tracks=20, seconds=10.0, n_seeds=1
    )  # tracks, instrumental audio (reference, tagger)
    tree = {
        "data": {"prepared_dir": str(tmp_path / "data/prepared")},
        "separate": {"out_dir": str(tmp_path / "data/instrumental")},
        "codec": CODEC,
        "train": {"out_dir": str(model_dir)},
        # 10.5 s clips: the package and the scored audio are cut to exactly 10 s with the same function
        "generate": {
            "prompts": str(_csv(tmp_path / "prompts.csv")),
            "n_prompts": 0,
            "seconds": 10.5,
            "steps": 1,
            "seeds": 1,
            "batch_size": 10,
            "device": "cpu",
            "out_dir": str(tmp_path / "generated"),
        },
        "evaluate": {
            "tagger_steps": 20,
            "local_clap_steps": 20,
            "ceiling": False,
            "cache_dir": str(tmp_path / "cache"),
            "out_dir": str(tmp_path / "reports"),
        },
        "submit": {"out_dir": str(tmp_path / "submission"), "team": "free-text"},
    }
    generate(params(tree))
    saved = [json.loads(line) for line in (tmp_path / "generated/prompts.jsonl").read_text().splitlines()]
    assert {r["prompt_id"]: r["concepts"] for r in saved} == {k: v for k, (_, v) in CAPTIONS.items()}
    assert {r["concepts_from"] for r in saved} == {"caption"}

    evaluate(params(tree))
    details = json.loads((tmp_path / "reports/details.json").read_text())
    assert details["prompts_without_concepts"] == ["seaside"]
    assert details["concepts_from_caption"] == sorted(CAPTIONS)
    assert details["prompt_split"] == {"ranked": 10, "ood": 0}
    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())
    assert all(np.isfinite(metrics[k]) for k in ("fad", "clap", "ccs", "ccs_margin")) and "ood" not in metrics
    table = pl.read_parquet(tmp_path / "reports/per_prompt.parquet")
    assert table.filter(pl.col("prompt_id") == "seaside")["n_concepts"].to_list() == [0]
    assert table.filter(pl.col("prompt_id") == "seaside")["ccs"].is_nan().all()  # left out of CCS

    out = submit(params(tree))
    rules = config(SubmissionRules, "submit", team="free-text")
    assert validate_submission(out, list(CAPTIONS), rules) == []
    assert check_main([str(out), "--prompts", str(tmp_path / "generated/prompts.jsonl")]) == 0
    # what evaluate embedded for FAD is what the zip holds: the same exactly-10 s, trimmed, 16-bit samples
    chosen = {r["prompt_id"]: r for r in table.filter(pl.col("chosen")).iter_rows(named=True)}
    with zipfile.ZipFile(out / "free-text_efficiency_1.zip") as zf:
        assert sorted(zf.namelist()) == sorted(f"{pid}.wav" for pid in CAPTIONS)
        for pid, row in chosen.items():
            pcm, rate = sf.read(io.BytesIO(zf.read(f"{pid}.wav")), dtype="int16")
            assert (pcm.shape, rate) == ((441000, 2), 44100)
            assert (
                pcm_sha256(pcm)
                == row["package_sha256"]
                == pcm_sha256(packaged_pcm(row["path"], rules.format))
            )
            assert (
                sf.info(row["path"]).frames == 463050
            )  # the generated file is longer: the zip holds the cut
    manifest = pq.read_table(tmp_path / "generated/manifest.parquet").to_pylist()
    assert len(manifest) == 10
