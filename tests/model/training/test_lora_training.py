"""LoRA fine-tuning in the training loop: only adapters change, resume stays bit-identical, and the two exports
(merged weights, or adapters + base reference) load as the same network."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from model.flow.trained import (
    ADAPTER_FILE,
    WEIGHTS_FILE,
    BaseModelMismatchError,
    artefact_sha256,
    load_trained,
)
from model.training.setup import run_training
from tests.model.training.fixtures import (
    HashTextEncoder,
    run_checkpoints,
    run_killed_at,
    tiny_job,
    write_fixture_shards,
)

LORA = {"rank": 2, "alpha": 4.0, "dropout": 0.1}  # dropout draws from the global RNG: resume must restore it


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-base")
    write_fixture_shards(root)
    run_training(tiny_job(root, steps=10), live_dir=str(root / "dvclive"), text_encoder=HashTextEncoder())
    return root / "final"


def lora_job(root, base_dir, **train):
    return tiny_job(root, init_from=str(base_dir), lora={**LORA, **train.pop("lora", {})}, **train)


def test_only_adapters_train_and_resume_is_bit_identical(tmp_path, base, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for root in (straight, resumed):
        write_fixture_shards(root, seed=2)
    run_training(lora_job(straight, base), live_dir=str(straight / "dvclive"), text_encoder=HashTextEncoder())

    run_killed_at(monkeypatch, 12, lora_job(resumed, base), str(resumed / "dvclive"))
    assert (
        run_training(
            lora_job(resumed, base), live_dir=str(resumed / "dvclive"), text_encoder=HashTextEncoder()
        ).step
        == 20
    )

    a = torch.load(run_checkpoints(straight) / "last.pt", weights_only=False)
    b = torch.load(run_checkpoints(resumed) / "last.pt", weights_only=False)
    assert a["fingerprint"]["lora"]["rank"] == 2 and a["fingerprint"] == b["fingerprint"]
    for key in ("model",):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), name
    for name, tensor in a["ema"]["module"].items():
        assert torch.equal(tensor, b["ema"]["module"][name]), name
    # the base weights stayed exactly the base's; the adapters moved
    base_state = load_trained(base).net.state_dict()
    for name, tensor in a["model"].items():
        if ".lora_" in name:
            continue
        plain = name.replace(".base_layer.", ".")
        assert torch.equal(tensor, base_state[plain]), name
    assert any(t.abs().sum() > 0 for n, t in a["model"].items() if ".lora_B." in n)
    trained_names = {n for group in a["optimizer"]["param_groups"] for n in group["names"]}
    assert trained_names and all(".lora_" in n for n in trained_names)


def test_merged_and_adapter_exports_load_as_the_same_network(tmp_path, base):
    merged_root, adapter_root = tmp_path / "merged", tmp_path / "adapter"
    for root, merge in ((merged_root, True), (adapter_root, False)):
        write_fixture_shards(root, seed=2)
        job = lora_job(root, base, steps=6, ckpt_every=6, val_every=6, lora={"merge": merge})
        run_training(job, live_dir=str(root / "dvclive"), text_encoder=HashTextEncoder())
    assert (merged_root / "final" / WEIGHTS_FILE).exists() and not (
        merged_root / "final" / ADAPTER_FILE
    ).exists()
    assert (adapter_root / "final" / ADAPTER_FILE).exists() and not (
        adapter_root / "final" / WEIGHTS_FILE
    ).exists()
    adapter_tensors = load_file(str(adapter_root / "final" / ADAPTER_FILE))
    assert adapter_tensors and all(".lora_" in k for k in adapter_tensors)
    fused, adapted = load_trained(merged_root / "final"), load_trained(adapter_root / "final")
    assert adapted.info["adapter"]["base_sha256"] == artefact_sha256(base)
    assert fused.info["lora"]["merged"] and not adapted.info["lora"]["merged"]
    assert set(fused.net.state_dict()) == set(adapted.net.state_dict())
    for name, tensor in fused.net.state_dict().items():
        assert torch.equal(tensor, adapted.net.state_dict()[name]), name
    assert artefact_sha256(adapter_root / "final") != artefact_sha256(base)


def test_adapter_export_refuses_a_changed_or_missing_base(tmp_path, base):
    own_base = tmp_path / "base"
    shutil.copytree(base, own_base)
    write_fixture_shards(tmp_path, seed=2)
    job = lora_job(tmp_path, own_base, steps=2, ckpt_every=2, val_every=2, lora={"merge": False})
    run_training(job, live_dir=str(tmp_path / "dvclive"), text_encoder=HashTextEncoder())
    weights = load_file(str(own_base / WEIGHTS_FILE))
    weights["final.linear.bias"] = weights["final.linear.bias"] + 1.0
    from safetensors.torch import save_file

    save_file(weights, str(own_base / WEIGHTS_FILE))
    with pytest.raises(
        BaseModelMismatchError, match=r"was trained on .*base with weights sha256 .* now holds"
    ):
        load_trained(tmp_path / "final")
    shutil.rmtree(own_base)
    with pytest.raises(BaseModelMismatchError, match=r"adapts the model in .*base.*which is not there"):
        load_trained(tmp_path / "final")
