"""The evaluate stage end to end on a tiny synthetic world; params validation."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import yaml

from evaluation.scoring.evaluator import run_evaluation
from evaluation.scoring.settings import EvaluateParamsError, EvaluateSettings
from pipelines.common.errors import ParamsError
from pipelines.evaluate import main
from tests.defaults import config
from tests.evaluation.synthetic_fixture import build_world
from tests.evaluation.tiny_clap import save_tiny_clap
from tests.pipelines.common.turn_holder import hold_turn, under_dvc


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    build_world(root, n_tracks=20, seconds=10.0, generator="faithful", n_seeds=2)
    params = {
        "data": {"prepared_dir": str(root / "data/prepared")},
        "separate": {"out_dir": str(root / "data/instrumental")},
        "generate": {"out_dir": str(root / "generated")},
        "codec": {"name": "mel", "device": "cpu", "mel": {"griffin_lim_iters": 8, "inversion_iters": 8}},
        "evaluate": {
            "embedder": "spectral",
            "text_audio": "local",
            "judge": "tagger",
            "best_seed_rule": "fad_clap",
            "tagger_steps": 60,
            "local_clap_steps": 40,
            "cache_dir": str(root / "cache"),
            "out_dir": str(root / "reports"),
        },
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.mark.slow
def test_stage_writes_metrics_table_and_best_seeds(world, run_records, monkeypatch):
    main(["--params", str(world / "params.yaml")])
    reports = world / "reports"
    metrics_bytes = (reports / "metrics.json").read_bytes()
    metrics = json.loads(metrics_bytes)
    details_bytes = (reports / "details.json").read_bytes()
    details = json.loads(details_bytes)
    assert set(metrics) == {"fad", "clap", "ccs", "ccs_margin", "first_seed", "all_seeds", "ceiling"}
    assert all(
        set(metrics[k]) == {"fad", "clap", "ccs", "ccs_margin"}
        for k in ("first_seed", "all_seeds", "ceiling")
    )
    assert (
        details["sets"]["ceiling"]["n_clips"] == 4
    )  # the 4 reference (test split) files through the mel codec
    record = json.loads((run_records / "evaluate.json").read_text())
    assert record["reference_cache_hit"] is False and record["ceiling_cache_hit"] is False
    assert all(isinstance(v, float) and np.isfinite(v) for v in _leaves(metrics)), metrics  # numbers only
    chosen_set = details["sets"]["chosen"]
    assert metrics["ccs_margin"] == pytest.approx(metrics["ccs"] - chosen_set["ccs_shuffled"])
    assert (
        details["n_prompts"] == 4
        and details["seeds"] == [0, 1]
        and details["sets"]["all_seeds"]["n_clips"] == 8
    )
    assert chosen_set["n_clips"] == 4 and details["sets"]["first_seed"]["n_clips"] == 4
    assert "not CLAP" in details["embedder"] and "not LAION-CLAP" in details["text_audio_model"]
    assert details["judge"].startswith("tagger")
    assert not any(s["challenge_metric"] for s in details["metric_sources"].values())  # all offline stand-ins
    assert details["reference"]["n_files"] == 4 and "cache_hit" not in details["reference"]
    assert {"tagger_validation", "local_clap_validation"} <= set(details)

    table = pl.read_parquet(reports / "per_prompt.parquet")
    assert table.height == 8
    chosen = table.filter(pl.col("chosen"))
    assert chosen.height == 4 and chosen["prompt_id"].n_unique() == 4
    best = json.loads((reports / "best_seeds.json").read_text())
    assert best == {r["prompt_id"]: r["seed"] for r in chosen.iter_rows(named=True)}
    # the headline is the chosen clips' own scores, the secondary blocks are their own sets
    assert metrics["clap"] == pytest.approx(chosen["text_audio"].mean())
    assert metrics["all_seeds"]["clap"] == pytest.approx(table["text_audio"].mean())
    assert metrics["first_seed"]["ccs"] == pytest.approx(table.filter(pl.col("seed") == 0)["ccs"].mean())
    row = table.row(0, named=True)
    assert len(row["concepts_present"]) + len(row["concepts_missing"]) == row["n_concepts"]
    # built-in prompts are the test split's tracks: each one's reference clip is its own track's audio
    refs = pl.read_parquet(world / "data/instrumental/manifest.parquet").select("track_id", "path")
    assert table["reference_id"].to_list() == table["prompt_id"].to_list()
    assert table["reference_overlap"].to_list() == [1.0] * 8
    assert (
        table.join(refs, left_on="prompt_id", right_on="track_id")["path_right"].to_list()
        == table["reference_path"].to_list()
    )
    # the report: a reference row per prompt, the showcase's references through the codec (evaluate.ceiling)
    assert (reports / "index.html").read_text().count('<tr class="reference">') == 4
    assert len(list((reports / "spectrograms").glob("*/reference-codec.png"))) == 4
    assert (reports / "models" / "tagger.pt").is_file() and (reports / "models" / "local_clap.pt").is_file()
    assert json.loads((run_records / "evaluate.json").read_text())["stage"] == "evaluate"
    assert not (reports / "evaluate_provenance.json").exists()

    # rerun under DVC while another experiment's stage holds the checkout's cores: it scores in its turn, and
    # reference statistics come from the cache
    holder = hold_turn(under_dvc(monkeypatch, world), 2.0)
    main(["--params", str(world / "params.yaml")])
    holder.wait()
    again = json.loads((reports / "metrics.json").read_text())
    record = json.loads((run_records / "evaluate.json").read_text())
    assert record["cpu_turn"]["waited_s"] > 1.0
    assert record["reference_cache_hit"] is True and record["ceiling_cache_hit"] is True
    assert again["fad"] == pytest.approx(metrics["fad"], rel=1e-12)
    # identical work, identical outputs: a cache hit leaves no trace in them
    assert (reports / "details.json").read_bytes() == details_bytes
    assert (reports / "metrics.json").read_bytes() == metrics_bytes
    assert again["ceiling"] == pytest.approx(
        metrics["ceiling"], rel=1e-12
    )  # the round trip came from the cache
    assert again["ccs"] == metrics["ccs"]  # seeded training: identical judgements


@pytest.mark.slow
def test_stage_real_path_with_a_tiny_random_clap(world, tmp_path):
    """embedder/text_audio/judge = clap run end to end; the tiny model is random, so only structure is checked."""
    clap_dir, _ = save_tiny_clap(tmp_path)
    params = yaml.safe_load((world / "params.yaml").read_text())
    params["evaluate"] = {
        "embedder": "clap",
        "text_audio": "clap",
        "judge": "clap",
        "clap_path": str(clap_dir),
        "ceiling": False,
        "clap_hop_seconds": 10.0,
        "cache_dir": str(tmp_path / "cache"),
        "out_dir": str(tmp_path / "reports"),
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    main(["--params", str(tmp_path / "params.yaml")])
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    details = json.loads((tmp_path / "reports" / "details.json").read_text())
    assert details["embedder"].startswith("clap-laion-music") and "transformers-dir" in details["embedder"]
    assert details["text_audio_model"].startswith("clap text-audio cosine")
    assert details["judge"].startswith("clap zero-shot")
    assert (
        details["metric_sources"]["fad"]["challenge_metric"]
        and details["metric_sources"]["clap"]["challenge_metric"]
    )
    assert not details["metric_sources"]["ccs"]["challenge_metric"]  # CLAP zero-shot is a stand-in judge
    assert details["reference"]["n_windows"] == 4  # one 10 s window per reference file at a 10 s hop
    assert -1.0 <= metrics["clap"] <= 1.0 and 0.0 <= metrics["ccs"] <= 1.0
    assert "ceiling" not in metrics  # evaluate.ceiling: false
    assert "tagger_validation" not in details and not (tmp_path / "reports" / "models" / "tagger.pt").exists()
    table = pl.read_parquet(tmp_path / "reports" / "per_prompt.parquet")
    assert table.height == 8 and table.filter(pl.col("chosen")).height == 4


@pytest.mark.slow
def test_identity_round_trip_puts_the_ceiling_on_the_reference(world, tmp_path):
    """With a lossless "codec" the ceiling's FAD is the reference against itself: zero."""
    settings = config(
        EvaluateSettings,
        "evaluate",
        tagger_steps=40,
        local_clap_steps=30,
        out_dir=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
    )
    out = run_evaluation(
        settings,
        str(world / "generated"),
        str(world / "data/prepared/tracks.parquet"),
        str(world / "data/instrumental/manifest.parquet"),
        roundtrip=lambda a, sr: (a, sr),
    )
    assert out.metrics["ceiling"]["fad"] == pytest.approx(
        0.0, abs=1e-4 * out.metrics["fad"]
    )  # singular 4-window covariances
    assert out.metrics["fad"] > 1e-3 and 0.0 <= out.metrics["ceiling"]["ccs"] <= 1.0


def test_settings_reject_bad_values():
    with pytest.raises(EvaluateParamsError, match="evaluate.judge"):
        config(EvaluateSettings, "evaluate", judge="oracle")
    with pytest.raises(ParamsError, match="unknown key 'evaluate.embeder'"):
        config(EvaluateSettings, "evaluate", embeder="spectral")
    with pytest.raises(EvaluateParamsError, match="evaluate.clap_path"):
        config(EvaluateSettings, "evaluate", embedder="clap")
    assert config(EvaluateSettings, "evaluate", clap_path=None).clap_path == ""
    with pytest.raises(ParamsError, match="evaluate.ceiling"):
        config(EvaluateSettings, "evaluate", ceiling="yes")


def test_alm_judge_keys_agreed_for_the_judge_are_known(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    settings = config(EvaluateSettings, "evaluate", judge="alm", alm_path=str(tmp_path), alm_batch_size=2)
    assert (settings.judge, settings.alm_path, settings.alm_batch_size) == ("alm", str(tmp_path), 2)
    with pytest.raises(EvaluateParamsError, match="evaluate.alm_path"):
        config(EvaluateSettings, "evaluate", judge="alm")
    with pytest.raises(ParamsError, match="evaluate.alm_batch_size"):
        config(EvaluateSettings, "evaluate", alm_batch_size=0)


def _leaves(tree):
    for value in tree.values():
        yield from (_leaves(value) if isinstance(value, dict) else [value])


@pytest.mark.slow
def test_headline_scores_the_ranked_prompts_and_ood_the_others(world, tmp_path):
    """Two of the four prompts marked ood: the headline, first_seed and all_seeds are the ranked prompts' clips,
    ``ood`` the chosen clips of the others; every clip is scored as packaged (fingerprinted)."""
    import shutil

    from evaluation.challenge.package import PackageFormat, packaged_pcm, pcm_sha256
    from evaluation.challenge.prompts import load_prompts, save_prompts

    gen = tmp_path / "generated"
    shutil.copytree(world / "generated", gen)
    prompts = load_prompts(gen / "prompts.jsonl")
    ood_ids = {prompts[1].prompt_id, prompts[3].prompt_id}
    save_prompts(
        gen / "prompts.jsonl",
        [replace(p, split="ood" if p.prompt_id in ood_ids else "ranked") for p in prompts],
    )
    settings = config(
        EvaluateSettings,
        "evaluate",
        tagger_steps=40,
        local_clap_steps=30,
        ceiling=False,
        out_dir=str(tmp_path / "reports"),
        cache_dir=str(tmp_path / "cache"),
    )
    fmt = PackageFormat(44100, 2, 10.0)
    out = run_evaluation(
        settings,
        str(gen),
        str(world / "data/prepared/tracks.parquet"),
        str(world / "data/instrumental/manifest.parquet"),
        package=fmt,
    )
    metrics, table = out.metrics, pl.from_arrow(out.per_prompt)
    assert set(metrics) == {"fad", "clap", "ccs", "ccs_margin", "first_seed", "all_seeds", "ood"}
    assert set(metrics["ood"]) == {"fad", "clap", "ccs", "ccs_margin"}
    ranked, ood = table.filter(pl.col("split") == "ranked"), table.filter(pl.col("split") == "ood")
    assert set(ood["prompt_id"]) == ood_ids and out.details["prompt_split"] == {"ranked": 2, "ood": 2}
    assert metrics["clap"] == pytest.approx(ranked.filter(pl.col("chosen"))["text_audio"].mean())
    assert metrics["all_seeds"]["clap"] == pytest.approx(ranked["text_audio"].mean())
    assert metrics["first_seed"]["ccs"] == pytest.approx(ranked.filter(pl.col("seed") == 0)["ccs"].mean())
    assert metrics["ood"]["clap"] == pytest.approx(ood.filter(pl.col("chosen"))["text_audio"].mean())
    assert out.details["sets"]["chosen"]["n_clips"] == 2 and out.details["sets"]["ood"]["n_clips"] == 2
    assert set(out.best_seeds) == {p.prompt_id for p in prompts}  # every prompt is still submitted
    for row in table.iter_rows(named=True):
        assert row["package_sha256"] == pcm_sha256(packaged_pcm(row["path"], fmt))
