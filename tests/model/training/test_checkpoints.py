import json

import pytest
import torch

from model.data.stats import Standardiser
from model.flow.trained import export_trained, load_trained
from model.network.backbone import VelocityNet
from model.training.checkpoints import CheckpointDir, CheckpointMismatchError, check_resumable
from model.training.setup import run_training
from tests.defaults import net_config
from tests.model.training.fixtures import (
    TINY_MODEL,
    HashTextEncoder,
    run_checkpoints,
    tiny_job,
    write_fixture_shards,
)


def test_rolling_last_and_keep_n(tmp_path):
    ckpt = CheckpointDir(tmp_path / "ck", keep=2)
    for step in (5, 10, 15, 20):
        ckpt.save({"format": 1, "step": step}, step)
    assert [p.name for p in ckpt.periodic()] == ["step-0000015.pt", "step-0000020.pt"]
    assert ckpt.load_last()["step"] == 20
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "last.pt",
        "step-0000015.pt",
        "step-0000020.pt",
    ]
    (tmp_path / "ck" / ".step-0000025.abc123.tmp.pt").write_bytes(b"half a checkpoint")  # a killed write
    ckpt.remove_partial_writes()
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "last.pt",
        "step-0000015.pt",
        "step-0000020.pt",
    ]
    ckpt.clear()
    assert ckpt.load_last() is None and not ckpt.periodic()


def test_changed_config_starts_a_separate_run_and_switching_back_resumes(tmp_path):
    write_fixture_shards(tmp_path)
    run_training(tiny_job(tmp_path, steps=5), live_dir=str(tmp_path / "live"), text_encoder=HashTextEncoder())
    first_run = run_checkpoints(tmp_path)
    changed = run_training(
        tiny_job(tmp_path, steps=5, lr=1e-3),
        live_dir=str(tmp_path / "live"),
        text_encoder=HashTextEncoder(),
    )
    assert changed.step == 5
    runs = sorted((tmp_path / "checkpoints").glob("run-*"))
    assert len(runs) == 2 and first_run in runs, "a changed setting must not overwrite the old run"
    assert torch.load(first_run / "last.pt", weights_only=False)["step"] == 5
    # back to the first settings, with bookkeeping keys changed: the finished run is recognised, not retrained
    done = run_training(
        tiny_job(tmp_path, steps=5, ckpt_every=2, keep=1),
        live_dir=str(tmp_path / "live"),
        text_encoder=HashTextEncoder(),
    )
    assert done.step == 5
    assert len(list((tmp_path / "checkpoints").glob("run-*"))) == 2
    with pytest.raises(CheckpointMismatchError, match="beyond train.steps=3"):
        run_training(
            tiny_job(tmp_path, steps=3), live_dir=str(tmp_path / "live"), text_encoder=HashTextEncoder()
        )
    extended = run_training(
        tiny_job(tmp_path, steps=8), live_dir=str(tmp_path / "live"), text_encoder=HashTextEncoder()
    )
    assert extended.step == 8
    steps = [
        line.split("\t")[0]
        for line in (tmp_path / "live" / "plots" / "metrics" / "train" / "lr.tsv")
        .read_text()
        .splitlines()[1:]
    ]
    assert steps == ["5", "8"]  # the extension continues the curves
    fresh = run_training(
        tiny_job(tmp_path, steps=4, resume=False),
        live_dir=str(tmp_path / "live"),
        text_encoder=HashTextEncoder(),
    )
    assert fresh.step == 4
    assert [p.name for p in CheckpointDir(first_run, 2).periodic()] == ["step-0000004.pt"]


def test_a_shorter_run_sharing_the_directory_resumes_from_its_own_end_and_exports_the_same_bytes(tmp_path):
    """Experiments share checkpoints: after an extended run moved last.pt on, rerunning the baseline's training
    (a code change, a forced rerun) must find its own end state, and give byte-identical DVC outputs."""
    write_fixture_shards(tmp_path)

    def train(steps: int):
        return run_training(
            tiny_job(tmp_path, steps=steps, ckpt_every=2, keep=5),
            live_dir=str(tmp_path / "live"),
            text_encoder=HashTextEncoder(),
        )

    def outputs() -> dict[str, bytes]:
        return {
            str(p.relative_to(tmp_path)): p.read_bytes()
            for folder in ("final", "live")
            for p in sorted((tmp_path / folder).rglob("*"))
            if p.is_file()
        }

    assert train(4).resumed_from == 0
    baseline = outputs()
    assert train(6).resumed_from == 4  # the extension
    again = train(4)
    assert (again.step, again.resumed_from) == (4, 4)
    assert outputs() == baseline


def test_checkpoint_from_other_settings_is_refused_with_the_differences(tmp_path):
    state = {"fingerprint": {"train": {"lr": 0.003}, "model": {"depth": 2}}}
    with pytest.raises(CheckpointMismatchError) as err:
        check_resumable(state, {"train": {"lr": 0.001}, "model": {"depth": 2}}, tmp_path / "ck" / "last.pt")
    message = str(err.value)
    assert "train.lr: 0.003 -> 0.001" in message and "model.depth" not in message
    assert "train.resume" in message and "rm -r" in message
    check_resumable(state, {"train": {"lr": 0.003}, "model": {"depth": 2}}, tmp_path / "ck" / "last.pt")


def test_load_trained_round_trip(tmp_path):
    cfg = net_config(latent_dim=4, text_dim=8, **TINY_MODEL)
    net = VelocityNet(cfg)
    stats = Standardiser(mean=(1.0, -2.0, 0.5, 0.0), var=(4.0, 1.0, 0.25, 9.0))
    codec, text = {"name": "mel", "mel": {"n_mels": 4}}, {"encoder": "minilm", "path": "", "max_length": 16}
    export_trained(
        tmp_path / "final", net.state_dict(), cfg.to_dict(), codec, text, stats, 123, frame_rate=10.0
    )
    trained = load_trained(tmp_path / "final")
    assert trained.config == cfg and trained.codec_params == codec and trained.text_params == text
    assert trained.steps == 123 and trained.info["frame_rate"] == 10.0 and not trained.net.training
    x, t = torch.randn(2, 4, 6), torch.rand(2)
    emb, mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    torch.testing.assert_close(trained.net(x, t, emb, mask), net.eval()(x, t, emb, mask))
    z = torch.zeros(1, 4, 2)
    torch.testing.assert_close(trained.destandardise(z)[0, :, 0], torch.tensor([1.0, -2.0, 0.5, 0.0]))
    torch.testing.assert_close(
        trained.destandardise(torch.ones(1, 4, 1))[0, :, 0], torch.tensor([3.0, -1.0, 1.0, 3.0])
    )
    torch.testing.assert_close(trained.standardise(trained.destandardise(x)), x)
    config = json.loads((tmp_path / "final" / "config.json").read_text())
    assert config["stats"]["var"] == [4.0, 1.0, 0.25, 9.0] and config["backbone"]["latent_dim"] == 4
    (tmp_path / "final" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_trained(tmp_path / "final")
