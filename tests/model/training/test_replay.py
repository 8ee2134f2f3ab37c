"""``train.replay``: a share of every batch from another store's train split — exact row counts, both sources walked
epoch by epoch, resume bit-identical, and a store of other codec settings or latent size refused naming both
values."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
import torch
import yaml

from model.data.stats import Standardiser
from model.data.store import PackedClips
from model.training.config import ReplaySettings
from model.training.data import TrainBatches
from model.training.replay import ReplayMismatchError, open_replay
from model.training.setup import run_training
from model.training.text_bank import TextBank
from tests.cli import user_error
from tests.model.training.fixtures import (
    HashTextEncoder,
    run_checkpoints,
    run_killed_at,
    tiny_job,
    tiny_params,
    write_fixture_shards,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny trained model and its data: (models/final, its packed store)."""
    root = tmp_path_factory.mktemp("replay-base")
    write_fixture_shards(root, n_train=10, seed=7)
    run_training(tiny_job(root, steps=10), live_dir=str(root / "dvclive"), text_encoder=HashTextEncoder())
    return root / "final", root / "store"


def open_pair(tmp_path):
    own_root, other_root = tmp_path / "own", tmp_path / "other"
    write_fixture_shards(own_root, n_train=6, seed=1)
    write_fixture_shards(other_root, n_train=10, seed=2)
    own, other = (
        PackedClips.open(own_root / "store", "train"),
        PackedClips.open(other_root / "store", "train"),
    )
    std = Standardiser.from_json(own_root / "stats.json")
    texts = TextBank.build(HashTextEncoder(), [*own.captions, *other.captions])
    return own, other, std, texts


def test_every_batch_holds_the_replay_rows_and_both_sources_are_walked_epoch_by_epoch(tmp_path):
    own, other, std, texts = open_pair(tmp_path)
    batches = TrainBatches(own, texts, std, batch_size=4, frames=16, seed=3, replay=other, replay_rows=1)
    drawn = [
        batches.next() for _ in range(20)
    ]  # 60 own rows = 10 epochs of 6; 20 replay rows = 2 epochs of 10
    for batch in drawn:
        assert [i >= len(own) for i in batch.clip_indices] == [False, False, False, True]
    own_counts = Counter(i for b in drawn for i in b.clip_indices[:3])
    replay_counts = Counter(b.clip_indices[3] - len(own) for b in drawn)
    assert own_counts == dict.fromkeys(range(6), 10) and replay_counts == dict.fromkeys(range(10), 2)
    # a replay row is that store's clip, standardised like the run's own data
    batch = drawn[0]
    index = batch.clip_indices[3] - len(own)
    n = int(batch.mask[3].sum())
    window = torch.from_numpy(other.window(index, 0, other.length(index)))
    assert any(
        torch.allclose(batch.x[3, :, :n], std.standardise(window[:, s : s + n]), atol=1e-6)
        for s in range(other.length(index) - n + 1)
    )
    text, text_mask = texts.batch([other.captions[index]])
    torch.testing.assert_close(batch.text[3, : text.shape[1]], text[0])
    assert torch.equal(batch.text_mask[3, : text.shape[1]], text_mask[0])


def test_replay_stream_resumes_to_the_same_batches_and_refuses_a_state_without_replay(tmp_path):
    own, other, std, texts = open_pair(tmp_path)

    def stream():
        return TrainBatches(own, texts, std, batch_size=5, frames=16, seed=3, replay=other, replay_rows=2)

    a = stream()
    for _ in range(7):
        a.next()
    state = a.state_dict()
    assert set(state["replay"]) >= {"epoch", "position"}
    expected = [a.next() for _ in range(5)]
    b = stream()
    b.load_state_dict(state)
    for want in expected:
        got = b.next()
        assert got.clip_indices == want.clip_indices
        torch.testing.assert_close(got.x, want.x)
    plain = TrainBatches(own, texts, std, batch_size=5, frames=16, seed=3)
    with pytest.raises(ValueError, match="train.replay.store"):
        stream().load_state_dict(plain.state_dict())
    with pytest.raises(ValueError, match="train.replay.store"):
        plain.load_state_dict(state)


@pytest.mark.parametrize(
    ("share", "batch_size", "rows"), [(0.5, 8, 4), (0.25, 8, 2), (0.3, 4, 1), (0.05, 8, None), (0.9, 4, None)]
)
def test_replay_share_rounds_to_rows_and_refuses_an_empty_source(share, batch_size, rows):
    settings = ReplaySettings(store="elsewhere", share=share)
    if rows is None:
        with pytest.raises(ValueError, match="train.replay.share"):
            settings.rows(batch_size)
    else:
        assert settings.rows(batch_size) == rows
    with pytest.raises(ValueError, match=r"train.replay.share must be in \(0, 1\)"):
        ReplaySettings(store="elsewhere", share=0.0)
    assert not ReplaySettings(store="", share=0.0).enabled


def test_fine_tune_with_replay_resumes_bit_identically_and_records_the_store(tmp_path, base, monkeypatch):
    base_dir, base_store = base
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for root in (straight, resumed):
        write_fixture_shards(root, n_train=5, seed=4)

    def job(root):
        return tiny_job(root, init_from=str(base_dir), replay={"store": str(base_store), "share": 0.5})

    run_training(job(straight), live_dir=str(straight / "dvclive"), text_encoder=HashTextEncoder())
    run_killed_at(monkeypatch, 12, job(resumed), str(resumed / "dvclive"))
    assert (
        run_training(job(resumed), live_dir=str(resumed / "dvclive"), text_encoder=HashTextEncoder()).step
        == 20
    )

    a = torch.load(run_checkpoints(straight) / "last.pt", weights_only=False)
    b = torch.load(run_checkpoints(resumed) / "last.pt", weights_only=False)
    assert a["fingerprint"]["replay"] == {
        "shards": a["fingerprint"]["replay"]["shards"],
        "clips": 10,
        "share": 0.5,
    }
    assert a["fingerprint"] == b["fingerprint"] and a["ranks"][0]["sampler"] == b["ranks"][0]["sampler"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    # 20 steps x 2 replay rows = 4 epochs of the base's 10 clips
    assert a["ranks"][0]["sampler"]["replay"]["epoch"] == 4
    record = json.loads((straight / "final" / "config.json").read_text())["replay"]
    assert record == {"store": str(base_store), "share": 0.5, "shards": record["shards"], "clips": 10}


def test_replay_changes_the_run_directory_and_a_moved_store_keeps_it(tmp_path, base):
    base_dir, base_store = base
    write_fixture_shards(tmp_path, n_train=5, seed=4)
    moved = tmp_path / "moved-store"
    shutil.copytree(base_store, moved)
    dirs = []
    for replay in (
        {"store": "", "share": 0.0},
        {"store": str(base_store), "share": 0.5},
        {"store": str(moved), "share": 0.5},
    ):
        result = run_training(
            tiny_job(tmp_path, init_from=str(base_dir), replay=replay, steps=2),
            live_dir=str(tmp_path / "dvclive"),
            text_encoder=HashTextEncoder(),
        )
        dirs.append(result.ckpt_dir)
    assert dirs[0] != dirs[1] and dirs[1] == dirs[2]


def test_store_of_other_codec_settings_or_latent_size_is_refused_naming_both_values(
    tmp_path, capsys, monkeypatch
):
    import model.text
    from pipelines import train as stage

    own, other, wide = tmp_path / "own", tmp_path / "other", tmp_path / "wide"
    write_fixture_shards(own, seed=1)
    write_fixture_shards(other, seed=2)
    write_fixture_shards(wide, seed=2, dim=6)
    description = json.loads((other / "store" / "store.json").read_text())
    description["settings"] = {"n_mels": 32}
    (other / "store" / "store.json").write_text(json.dumps(description))
    with pytest.raises(ReplayMismatchError, match=r"settings: replay \{'n_mels': 32\}, this run \{\}"):
        open_replay(str(other / "store"), str(own / "store"))
    with pytest.raises(ReplayMismatchError, match="dim: replay 6, this run 4"):
        open_replay(str(wide / "store"), str(own / "store"))

    monkeypatch.setattr(model.text, "build_text_encoder", lambda section, device="cpu": HashTextEncoder())
    for store, expected in (
        (wide / "store", "dim: replay 6, this run 4"),
        (tmp_path / "nowhere", "not a packed latent store"),
    ):
        params = tiny_params(own, replay={"store": str(store), "share": 0.5})
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        capsys.readouterr()
        err = user_error(capsys, stage.main, ["--params", str(tmp_path / "params.yaml")])
        assert f"train.replay.store = {store}" in err and expected in err
    params = tiny_params(own, replay={"store": str(wide / "store"), "share": 0.0})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert "train.replay.share must be in (0, 1)" in user_error(
        capsys, stage.main, ["--params", str(tmp_path / "params.yaml")]
    )


def test_ray_workers_get_absolute_base_and_replay_paths(tmp_path, monkeypatch):
    from model.training.ray_train import absolute_job

    monkeypatch.chdir(tmp_path)
    job = tiny_job(tmp_path, init_from="models/base", replay={"store": "data/base-store", "share": 0.5})
    job = absolute_job(job)  # a worker may run in another directory: relative paths would not resolve there
    assert job.train.init_from == str(tmp_path / "models/base")
    assert job.train.replay.store == str(tmp_path / "data/base-store") and job.train.replay.share == 0.5
    assert absolute_job(tiny_job(tmp_path)).train.replay.store == ""  # no replay stays no replay
