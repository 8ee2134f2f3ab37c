"""``train.init_from``: start from a trained model's weights; refuse a base of another latent space, text encoder or
shape naming both values; the base's identity keys the run directory."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from model.flow.trained import artefact_sha256, load_trained
from model.training.init_from import InitMismatchError, apply_init, load_init
from model.training.setup import build_net, run_training
from tests.cli import user_error
from tests.model.training.fixtures import (
    TINY_MODEL,
    HashTextEncoder,
    run_checkpoints,
    tiny_job,
    tiny_params,
    write_fixture_shards,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny trained model (10 steps on the fixture shards): its models/final directory."""
    root = tmp_path_factory.mktemp("base")
    write_fixture_shards(root)
    run_training(tiny_job(root, steps=10), live_dir=str(root / "dvclive"), text_encoder=HashTextEncoder())
    return root / "final"


def fine_tune(root, base_dir, encoder=None, **train):
    return run_training(
        tiny_job(root, init_from=str(base_dir), **train),
        live_dir=str(root / "dvclive"),
        text_encoder=encoder or HashTextEncoder(),
    )


def test_apply_init_copies_every_base_weight(base):
    init = load_init(str(base))
    assert init.sha256 == artefact_sha256(base) and len(init.sha256) == 64
    net, _ = build_net(dict(TINY_MODEL), 4, 8)
    report = apply_init(net, init, strict=True)
    expected = load_trained(base).net.state_dict()
    assert report.not_loaded == [] and report.loaded == len(expected)
    assert all(torch.equal(v, expected[k]) for k, v in net.state_dict().items())


def test_fine_tune_has_its_own_optimiser_schedule_and_the_base_statistics(tmp_path, base):
    write_fixture_shards(tmp_path, seed=1)  # other data: other statistics
    result = fine_tune(tmp_path, base, steps=4, ckpt_every=4, val_every=4)
    assert result.step == 4
    state = torch.load(run_checkpoints(tmp_path) / "last.pt", weights_only=False)
    assert state["scheduler"]["last_epoch"] == 4  # its own schedule, from step 0
    assert all(s["step"].item() == 4 for s in state["optimizer"]["state"].values())  # a fresh AdamW
    assert state["fingerprint"]["init"] == {"sha256": artefact_sha256(base), "strict": True, "stats": "base"}
    tuned, base_model = load_trained(tmp_path / "final"), load_trained(base)
    assert tuned.stats == base_model.stats  # train.init_stats: base
    assert tuned.info["init_from"]["sha256"] == artefact_sha256(base)
    own = json.loads((tmp_path / "stats.json").read_text())
    fine_tune(tmp_path, base, steps=4, ckpt_every=4, val_every=4, init_stats="data")
    assert list(load_trained(tmp_path / "final").stats.mean) == own["mean"]


def test_a_different_base_starts_a_new_run_directory(tmp_path, base, tmp_path_factory):
    other_root = tmp_path_factory.mktemp("other-base")
    write_fixture_shards(other_root)
    run_training(
        tiny_job(other_root, steps=10, seed=3),
        live_dir=str(other_root / "dvclive"),
        text_encoder=HashTextEncoder(),
    )
    write_fixture_shards(tmp_path)
    fine_tune(tmp_path, base, steps=2, ckpt_every=2, val_every=2)
    fine_tune(tmp_path, other_root / "final", steps=2, ckpt_every=2, val_every=2)
    runs = sorted((tmp_path / "checkpoints").glob("run-*"))
    assert len(runs) == 2
    # the same base again resumes its own run (nothing left to train), whatever the path it is reached by
    (tmp_path / "again").symlink_to(base)
    assert fine_tune(tmp_path, tmp_path / "again", steps=2, ckpt_every=2, val_every=2).step == 2
    assert len(sorted((tmp_path / "checkpoints").glob("run-*"))) == 2


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"codec": {"name": "mel", "mel": {"n_mels": 32}}}, "codec.mel.n_mels: base 64, this run 32"),
        (
            {"text": {"encoder": "flan-t5", "path": "x", "max_length": 16}},
            "text.encoder: base 'minilm', this run 'flan-t5'",
        ),
    ],
)
def test_stage_refuses_another_codec_or_text_encoder_naming_both_values(
    tmp_path, base, monkeypatch, capsys, change, expected
):
    import model.text
    from pipelines import train as stage

    write_fixture_shards(tmp_path)
    params = tiny_params(tmp_path, init_from=str(base))
    params.update(change)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    capsys.readouterr()
    monkeypatch.setattr(model.text, "build_text_encoder", lambda section, device="cpu": HashTextEncoder())
    err = user_error(capsys, stage.main, ["--params", str(tmp_path / "params.yaml")])
    assert f"train.init_from = {base} does not fit this run: {expected}" in err


def test_refuses_another_latent_size_and_text_dimension(tmp_path, base):
    write_fixture_shards(tmp_path, dim=6)
    with pytest.raises(
        InitMismatchError,
        match=r"latent size: base 4, this run's data 6; text dimension: base 8, this run 12",
    ):
        fine_tune(tmp_path, base, encoder=HashTextEncoder(dim=12))


def test_refuses_other_shapes_listing_them_unless_not_strict(tmp_path, base):
    write_fixture_shards(tmp_path)
    wider = {**TINY_MODEL, "hidden": 24, "heads": 2}
    job = tiny_job(tmp_path, init_from=str(base), steps=2, ckpt_every=2, val_every=2)
    job = type(job)(**{**vars(job), "network": wider})
    with pytest.raises(InitMismatchError) as info:
        run_training(job, live_dir=str(tmp_path / "dvclive"), text_encoder=HashTextEncoder())
    message = str(info.value)
    assert (
        "model.hidden: base 16, this run 24" in message
        and "in_proj.weight: base (16, 4, 3), this run (24, 4, 3)" in message
    )
    assert "train.init_strict: false" in message and "\n" not in message
    deeper = {**TINY_MODEL, "depth": 2}
    job = tiny_job(tmp_path, init_from=str(base), init_strict=False, steps=2, ckpt_every=2, val_every=2)
    job = type(job)(**{**vars(job), "network": deeper})
    run_training(job, live_dir=str(tmp_path / "dvclive"), text_encoder=HashTextEncoder())
    not_loaded = load_trained(tmp_path / "final").info["init_from"]["not_loaded"]
    assert not_loaded and all(k.startswith("blocks.1.") for k in not_loaded)


def test_missing_base_and_lora_without_base_are_refused(tmp_path):
    from pipelines.common.params import ParamsError

    with pytest.raises(InitMismatchError, match="train.init_from = '.*nowhere' holds no trained model"):
        load_init(str(tmp_path / "nowhere"))
    with pytest.raises(ParamsError, match="train.lora.rank > 0 adapts a trained model: set train.init_from"):
        tiny_job(tmp_path, lora={"rank": 4})
    with pytest.raises(ParamsError, match="train.init_from and train.out_dir are the same directory"):
        tiny_job(tmp_path, init_from=str(tmp_path / "final"))
