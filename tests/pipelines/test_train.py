import json
from pathlib import Path

import pytest
import torch
import yaml

from model.flow.trained import load_trained
from model.training.data import ClipSampler
from tests.model.training.fixtures import (
    HashTextEncoder,
    run_checkpoints,
    tiny_job,
    tiny_params,
    write_fixture_shards,
)
from tests.pipelines.common.turn_holder import hold_turn, under_dvc

REPO = Path(__file__).resolve().parents[2]


def test_stage_trains_and_writes_artefact_and_run_record(tmp_path, monkeypatch, run_records):
    import model.text
    from pipelines import train as stage

    write_fixture_shards(tmp_path)
    params = tiny_params(tmp_path, steps=6, ckpt_every=3, val_every=3)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(model.text, "build_text_encoder", lambda section, device="cpu": HashTextEncoder())
    stage.main(["--params", str(tmp_path / "params.yaml")])
    trained = load_trained(tmp_path / "final")
    assert trained.steps == 6 and trained.info["text_encoder"] == "hash-words"
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == ["config.json", "model.safetensors"]
    prov = json.loads((run_records / "train.json").read_text())
    assert (
        prov["stage"] == "train"
        and prov["steps"] == 6
        and prov["resumed_from_step"] == 0
        and prov["steps_per_s"] > 0
        and set(prov["params"]) == {"codec", "text", "model", "train", "ray"}
    )
    # the scan backend that ran, and why: in the provenance and as a DVCLive param (`dvc exp show`)
    assert prov["scan_backend"] == {
        "requested": "torch",
        "backend": "torch",
        "reason": "model.scan_backend is torch",
    }
    assert yaml.safe_load((tmp_path / "dvclive" / "params.yaml").read_text()) == {"scan_backend": "torch"}
    metrics = json.loads((tmp_path / "dvclive" / "metrics.json").read_text())
    # DVCLive holds what the inputs, code and params decide; the throughput is a run fact (the record)
    assert metrics["step"] == 6 and {"loss", "lr", "grad_norm"} <= set(metrics["train"])
    assert "steps_per_s" not in metrics["train"]
    assert (tmp_path / "dvclive" / "plots" / "metrics" / "val" / "loss.tsv").exists()


def test_in_process_training_takes_the_checkouts_cpu_turn(tmp_path, monkeypatch, run_records):
    """Under DVC a CPU training waits while another experiment's stage of the same checkout holds the cores."""
    import model.text
    from pipelines import train as stage

    write_fixture_shards(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(tmp_path, steps=2)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(model.text, "build_text_encoder", lambda section, device="cpu": HashTextEncoder())
    holder = hold_turn(under_dvc(monkeypatch, tmp_path), 2.0)
    stage.main(["--params", str(tmp_path / "params.yaml")])
    holder.wait()
    turn = json.loads((run_records / "train.json").read_text())["cpu_turn"]
    assert turn["lock"] == str(tmp_path / ".dvc" / "tmp" / "flowjam-cpu.lock")
    assert turn["waited_s"] > 1.0


def test_stage_rejects_unknown_train_key(tmp_path):
    from pipelines import train as stage

    write_fixture_shards(tmp_path)
    params = tiny_params(tmp_path, stepz=3)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ValueError, match=r"train\.stepz.*train\.steps"):
        stage.main(["--params", str(tmp_path / "params.yaml")])


@pytest.mark.slow
def test_two_ray_train_workers_average_gradients(tmp_path, monkeypatch, ray_instance):
    """2 DDP workers on CPU: each draws its own half of the data, yet the replicas stay identical."""
    from model.training.ray_train import run_ray_training

    write_fixture_shards(tmp_path)
    job = tiny_job(tmp_path, steps=4, ckpt_every=2, val_every=4, workers=2, batch_size=2)
    monkeypatch.chdir(tmp_path)
    run_ray_training(
        job,
        storage_dir=tmp_path / "ray",
        live_dir=str(tmp_path / "dvclive"),
        text_encoder=HashTextEncoder(),
    )
    state = torch.load(run_checkpoints(tmp_path) / "last.pt", weights_only=False)
    assert state["step"] == 4 and len(state["ranks"]) == 2
    digests = [r["digest"] for r in state["ranks"]]
    assert digests[0] == digests[1]  # the replicas hold identical weights after 4 updates
    # ... although they trained on disjoint clips, so their gradients were averaged
    seen = [set(i for i, _ in ClipSampler(12, 0, rank, 2).take(6)) for rank in (0, 1)]  # one epoch each
    assert not seen[0] & seen[1]
    assert all(r["sampler"]["rank"] == k for k, r in enumerate(state["ranks"]))
    first = torch.load(run_checkpoints(tmp_path) / "step-0000002.pt", weights_only=False)
    assert any(not torch.equal(first["model"][k], v) for k, v in state["model"].items())
    assert load_trained(tmp_path / "final").steps == 4
