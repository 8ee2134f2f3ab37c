"""The FLAN-T5 loading path, exercised with a tiny random T5 snapshot written to a temp dir."""

import pytest
import torch

from model.text import build_text_encoder


def test_tiny_t5_loads_through_factory_and_encodes(tiny_t5_dir):
    enc = build_text_encoder({"encoder": "flan-t5", "path": str(tiny_t5_dir), "max_length": 16})
    assert enc.name == "flan-t5"
    assert enc.dim == 32
    emb, mask = enc.encode(["rock guitar and drums", "", "calm ambient piano piece, slow and relaxing"])
    assert emb.dtype == torch.float32 and mask.dtype == torch.bool
    assert emb.shape[:2] == mask.shape and emb.shape[2] == 32
    assert mask.sum(dim=1).min() >= 1, "the empty null text keeps its </s> token"
    assert mask[1].sum() == 1
    assert torch.all(emb[~mask] == 0)
    assert torch.isfinite(emb).all()
    assert enc.settings() == {"encoder": "flan-t5", "path": str(tiny_t5_dir), "max_length": 16, "dim": 32}


def test_t5_is_frozen_and_deterministic(tiny_t5_dir):
    enc = build_text_encoder({"encoder": "flan-t5", "path": str(tiny_t5_dir), "max_length": 16})
    assert not enc._model.training
    assert all(not p.requires_grad for p in enc._model.parameters())
    first, _ = enc.encode(["sad folk with strings"])
    enc.clear_cache()
    again, _ = enc.encode(["sad folk with strings"])
    assert torch.equal(first, again)
    assert not first.requires_grad


def test_t5_truncates_to_max_length(tiny_t5_dir):
    enc = build_text_encoder({"encoder": "flan-t5", "path": str(tiny_t5_dir), "max_length": 4})
    _, mask = enc.encode(["upbeat rock song with electric guitar and drums " * 3])
    assert mask.shape[1] == 4


def test_missing_t5_dir_names_text_path(tmp_path):
    missing = tmp_path / "no-such-flan-t5"
    with pytest.raises(FileNotFoundError, match="text.path") as info:
        build_text_encoder({"encoder": "flan-t5", "path": str(missing), "max_length": 16})
    assert "huggingface-cli download google/flan-t5-base" in str(info.value)


def test_unreachable_hub_id_names_text_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="text.path"):
        build_text_encoder({"encoder": "flan-t5", "path": "", "max_length": 16})


def test_t5_dir_without_weights_names_text_path(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="text.path"):
        build_text_encoder({"encoder": "flan-t5", "path": str(tmp_path), "max_length": 16})
