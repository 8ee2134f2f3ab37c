import json
import os
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
import yaml

from evaluation.challenge.prompts import Prompt, load_prompts, save_prompts
from model.flow.text_to_music import GenerationError, to_output
from pipelines.common.params import ParamsError
from pipelines.generate import main, resume_key, run_stage, sampler_of
from tests.cli import user_error
from tests.defaults import params
from tests.pipelines.common.turn_holder import hold_turn, under_dvc


def stage_tree(tmp_path, model_dir, prompts, **generate):
    """The generate stage's params for ``prompts`` (written to ``tmp_path/prompts.jsonl``) and the tiny model, CPU,
    output in ``tmp_path/generated``; ``generate`` overrides the section's keys."""
    save_prompts(tmp_path / "prompts.jsonl", prompts)
    section = {
        "prompts": str(tmp_path / "prompts.jsonl"),
        "n_prompts": 0,
        "device": "cpu",
        "out_dir": str(tmp_path / "generated"),
    }
    return {"generate": {**section, **generate}, "train": {"out_dir": str(model_dir)}}


def _read(path):
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return audio, sr


def test_single_prompt_cli_writes_a_10s_44k_stereo_wav(model_dir, tmp_path):
    out = tmp_path / "out.wav"
    args = [
        "calm piano ballad",
        "-o",
        str(out),
        "--model-dir",
        str(model_dir),
        "--steps",
        "2",
        "--params",
        str(tmp_path / "absent.yaml"),
        "--device",
        "cpu",
    ]
    main(args)
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames, info.format) == (44100, 2, 441000, "WAV")
    audio, _ = _read(out)
    assert np.isfinite(audio).all() and np.sqrt(np.mean(audio**2)) > 1e-3
    other = tmp_path / "other.wav"
    main([*args[:2], str(other), *args[3:], "--seed", "1", "--seconds", "11"])
    assert sf.info(str(other)).frames == 11 * 44100
    assert not np.allclose(_read(other)[0][:441000], audio)


def test_cli_refuses_clips_shorter_than_10_seconds(model_dir, tmp_path):
    with pytest.raises(ParamsError, match="generate.seconds"):
        main(
            [
                "x",
                "-o",
                str(tmp_path / "o.wav"),
                "--model-dir",
                str(model_dir),
                "--seconds",
                "9",
                "--params",
                str(tmp_path / "absent.yaml"),
            ]
        )


def test_stage_renders_every_prompt_and_seed_batch_independently_and_resumes(
    model_dir, tmp_path, run_records
):
    prompts = [
        Prompt("p1", "calm piano ballad"),
        Prompt("p2", "fast loud rock with distorted guitar and drums"),
        Prompt("p3", "sad strings"),
    ]
    out = tmp_path / "generated"
    tree = stage_tree(
        tmp_path,
        model_dir,
        prompts,
        seconds=10.0,
        steps=2,
        cfg_scale=3.5,
        method="heun",
        seeds=2,
        seed=0,
        batch_size=4,
    )
    run_stage(params(tree))
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert [(r["prompt_id"], r["seed"]) for r in manifest] == [
        (p, k) for p in ("p1", "p2", "p3") for k in (0, 1)
    ]
    assert all(r["seconds"] == 10.0 and r["sample_rate"] == 44100 for r in manifest)
    # the stage writes the prompt set it used, with the concepts it extracted from each caption
    assert [(p.prompt_id, p.caption) for p in load_prompts(out / "prompts.jsonl")] == [
        (p.prompt_id, p.caption) for p in prompts
    ]
    assert json.loads((run_records / "generate.json").read_text())["n_files"] == 6
    assert not (out / "provenance.json").exists()
    record = json.loads((run_records / "generate.json").read_text())
    assert record["precision"] == "fp32" and record["scan_backend"]["backend"] == "torch"
    assert (
        record["scan_backend"]["requested"] == "auto"
    )  # generation picks for its device, whatever training ran
    first = {(r["prompt_id"], r["seed"]): _read(r["path"])[0] for r in manifest}
    assert all(a.shape == (441000, 2) for a in first.values())
    assert not np.allclose(first[("p1", 0)], first[("p1", 1)])
    # p3 seed 1 was rendered beside p2 in a batch of 2; alone now it must come out the same
    target = out / "p3" / "seed-1.wav"
    target.unlink()
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*.wav")}
    run_stage(params(tree))
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    np.testing.assert_allclose(_read(target)[0], first[("p3", 1)], atol=2 / 32768)
    # other sampler settings: nothing is reused, and files of prompts no longer in the set are removed
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*.wav")}
    save_prompts(tmp_path / "prompts.jsonl", [prompts[0], prompts[2]])
    run_stage(params({**tree, "generate": {**tree["generate"], "steps": 3}}))
    assert not (out / "p2" / "seed-0.wav").exists()
    assert all(p.stat().st_mtime_ns != t for p, t in before.items() if "p2" not in p.parts)
    assert not np.allclose(_read(target)[0], first[("p3", 1)], atol=1e-3)


def test_resume_key_names_the_weights_by_content_not_by_file_time(tmp_path):
    """The key is a stage output: identical weights written again (a rerun, a DVC checkout) give the same key."""
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    settings = params({}).generate
    key = resume_key(settings, tmp_path)
    os.utime(tmp_path / "model.safetensors", ns=(1, 1))
    assert resume_key(settings, tmp_path) == key
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert resume_key(settings, tmp_path)["weights_sha256"] != key["weights_sha256"]


def test_short_or_non_finite_decodes_fail_loudly():
    with pytest.raises(GenerationError, match=r"9\.000 s, shorter than the 10.0 s"):
        to_output(np.zeros((1, 9 * 22050), np.float32), 22050, 10.0, "p")
    with pytest.raises(GenerationError, match="non-finite"):
        to_output(np.full((1, 11 * 22050), np.nan, np.float32), 22050, 10.0, "p")
    out = to_output(np.ones((1, 22050 * 10 + 7), np.float32), 22050, 10.0)
    assert out.shape == (2, 441000)


def test_settings_reject_unknown_keys_and_bad_values():
    with pytest.raises(ParamsError, match="generate.stepz"):
        params({"generate": {"stepz": 3}})
    with pytest.raises(ParamsError, match="generate.method"):
        sampler_of(params({"generate": {"method": "rk4"}}).generate)
    with pytest.raises(ParamsError, match="generate.seeds"):
        params({"generate": {"seeds": "two"}})
    with pytest.raises(ParamsError, match=r"generate.seconds = 5.0: .*the challenge scores the first 10 s"):
        params({"generate": {"seconds": 5.0}})
    assert sampler_of(params({"generate": {"steps": 100}}).generate).steps == 100


def test_cli_empty_prompt_is_refused_before_loading_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no models/final here: the prompt check must come first
    for prompt in ("", "   "):
        argv = [prompt, "-o", str(tmp_path / "o.wav"), "--params", str(tmp_path / "absent.yaml")]
        assert "prompt is empty" in user_error(capsys, main, argv)
    assert not (tmp_path / "o.wav").exists()


def test_cli_without_a_model_names_the_option_to_set(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = user_error(capsys, main, ["calm piano", "-o", str(tmp_path / "o.wav"), "--params", "absent.yaml"])
    assert re.search(r"models/final.*--model-dir.*train\.out_dir.*dvc repro train", err)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": {"out_dir": "elsewhere"}}))
    assert "no trained model in elsewhere" in user_error(
        capsys, main, ["calm piano", "-o", str(tmp_path / "o.wav")]
    )
    assert not (tmp_path / "o.wav").exists()


def test_cli_falls_back_to_the_params_file(model_dir, tmp_path, monkeypatch):
    """Without flags, the model comes from train.out_dir and the sampler/length from generate.*; flags win."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "train": {"out_dir": str(model_dir)},
                "generate": {"seconds": 10.5, "steps": 1, "method": "heun", "device": "cpu"},
            }
        )
    )
    main(["calm piano", "-o", "a.wav"])
    assert sf.info("a.wav").frames == int(10.5 * 44100)
    main(["calm piano", "-o", "b.wav", "--seconds", "10"])
    assert sf.info("b.wav").frames == 10 * 44100
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"generate": {"steps": 0}}))
    with pytest.raises(ParamsError, match=r"generate\.steps"):
        main(["calm piano", "-o", "c.wav", "--model-dir", str(model_dir)])


def test_bf16_precision_samples_close_to_fp32_and_is_part_of_the_resume_key(model_dir, tmp_path):
    from model.flow.sampling import SamplerConfig, noise_generator
    from model.flow.text_to_music import TextToMusic

    sampler = SamplerConfig(steps=3, cfg_scale=2.0, method="euler")
    latents = {}
    for precision in ("fp32", "bf16"):
        engine = TextToMusic.from_dir(model_dir, "cpu", precision)
        latents[precision] = engine.latents(["calm piano"], [noise_generator("p", 0)], 10.0, sampler)
    assert latents["bf16"].dtype == torch.float32 and torch.isfinite(latents["bf16"]).all()
    relative = (latents["bf16"] - latents["fp32"]).norm() / latents["fp32"].norm()
    assert 0 < relative < 3e-2
    settings = params({"generate": {"precision": "bf16"}}).generate
    assert resume_key(settings, model_dir)["precision"] == "bf16"
    with pytest.raises(ParamsError, match=r"generate\.precision = 'fp16'"):
        sampler_of(params({"generate": {"precision": "fp16"}}).generate)


def test_stage_renders_in_its_turn_for_the_cpu(model_dir, tmp_path, monkeypatch, run_records):
    """Under DVC a CPU generate waits while another experiment's stage of the same checkout holds the cores."""
    tree = stage_tree(tmp_path, model_dir, [Prompt("p1", "calm piano ballad")], steps=1, seeds=1)
    holder = hold_turn(under_dvc(monkeypatch, tmp_path), 3.0)
    run_stage(params(tree))
    holder.wait()
    turn = json.loads((run_records / "generate.json").read_text())["cpu_turn"]
    assert turn["lock"] == str(tmp_path / ".dvc" / "tmp" / "flowjam-cpu.lock")
    assert turn["waited_s"] > 0.5
