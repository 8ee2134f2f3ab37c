"""CLAP loading paths on a tiny randomly initialised ClapConfig (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.metrics.clap_model import (
    ClapEmbedder,
    ClapWeightsError,
    clap_config_from_original,
    load_clap,
    model_from_original,
    rename_original_clap_state_dict,
)
from tests.evaluation.tiny_clap import TEXTS, save_tiny_clap


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("clap")
    _, model = save_tiny_clap(root)
    return root, model


def _audio(seconds=10.0, sr=44100, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    return np.stack([tone, tone]).astype(np.float32)


def test_transformers_dir_gives_normalised_audio_and_text_embeddings(tiny_dir):
    root, _ = tiny_dir
    embedder = ClapEmbedder(load_clap(str(root / "hf")), batch_size=4, hop_seconds=5.0)
    emb = embedder.embed(_audio(), 44100)
    assert emb.shape == (2, 12)  # 10 s scored, 5 s hop -> windows at 0 s and 5 s
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    text = embedder.embed_text(TEXTS)
    assert text.shape == (3, 12)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(text[0], text[1])


def test_fadtk_windows_are_ten_seconds_every_second_zero_padded(tiny_dir):
    root, _ = tiny_dir
    embedder = ClapEmbedder(load_clap(str(root / "hf")))
    windows = embedder.windows(_audio(seconds=12.0), 44100)
    assert windows.shape == (10, 480000)  # only the first 10 s are scored
    assert np.all(windows[9, 48000:] == 0.0) and np.any(windows[9, :48000] != 0.0)
    np.testing.assert_allclose(windows[1, : 9 * 48000], windows[0, 48000:], atol=0)


def test_short_files_get_a_window_per_started_second_as_fadtk(tiny_dir):
    """A 6.5 s file: windows at 0..6 s (7, fadtk's range(0, len, hop)); none made only of zero padding."""
    root, _ = tiny_dir
    embedder = ClapEmbedder(load_clap(str(root / "hf")))
    windows = embedder.windows(_audio(seconds=6.5), 44100)
    assert windows.shape == (7, 480000)
    assert all(np.any(w[:24000] != 0.0) for w in windows) and np.all(windows[:, 312000:] == 0.0)
    assert embedder.windows(_audio(seconds=0.4), 44100).shape == (1, 480000)
    assert (
        "fadtk" in embedder.settings()["windows"]
    )  # a changed windowing never reuses cached reference stats


def _to_original(hf_state):
    """Independent inverse of the mapping: transformers names -> LAION's original (DDP-prefixed) names."""
    out, qkv = {}, {}
    for key, value in hf_state.items():
        if key.endswith(("position_ids", "token_type_ids")):
            continue
        if key.startswith("audio_model.audio_encoder."):
            k = "audio_branch." + key[len("audio_model.audio_encoder.") :]
            for hf, orig in (
                (".layernorm_before.", ".norm1."),
                (".layernorm_after.", ".norm2."),
                (".intermediate.dense.", ".mlp.fc1."),
                (".output.dense.", ".mlp.fc2."),
                (".attention.output.dense.", ".attn.proj."),
                (".attention.self.", ".attn."),
                ("batch_norm.", "bn0."),
            ):
                k = k.replace(hf, orig)
            k = k.replace(".attn.mlp.fc2.", ".attn.proj.")
            for part in ("query", "key", "value"):
                if f".attn.{part}." in k:
                    qkv.setdefault(k.replace(f".attn.{part}.", ".attn.qkv."), {})[part] = value
                    break
            else:
                out["module." + k] = value
        elif key.startswith("text_model."):
            out["module.text_branch." + key[len("text_model.") :]] = value
        elif "_projection.linear" in key:
            out["module." + key.replace(".linear1.", ".0.").replace(".linear2.", ".2.")] = value
        else:
            out["module." + key] = value
    for k, parts in qkv.items():
        out["module." + k] = torch.cat([parts["query"], parts["key"], parts["value"]])
    out["module.audio_branch.spectrogram_extractor.stft.conv_real.weight"] = torch.zeros(3, 1, 4)
    out["module.audio_branch.logmel_extractor.melW"] = torch.zeros(4, 4)
    out["module.text_branch.embeddings.position_ids"] = torch.arange(40)[None]
    return out


def test_original_checkpoint_key_mapping_round_trips(tiny_dir, tmp_path):
    root, model = tiny_dir
    original = _to_original(model.state_dict())
    renamed = rename_original_clap_state_dict(original)
    for key, value in model.state_dict().items():
        if key.endswith(("position_ids", "token_type_ids")):
            continue
        assert torch.equal(renamed[key], value), key
    cfg = clap_config_from_original(original)
    assert list(cfg.audio_config.depths) == [1, 1] and list(cfg.audio_config.num_attention_heads) == [2, 4]
    assert cfg.audio_config.window_size == 8 and cfg.projection_dim == 12

    ckpt = tmp_path / "music_audioset_epoch_15_esc_90.14.pt"
    torch.save({"epoch": 15, "state_dict": original}, ckpt)
    bundle = load_clap(str(ckpt), tokenizer_path=str(root / "hf"))
    assert bundle.kind == "original-pt"
    reference = ClapEmbedder(load_clap(str(root / "hf")), hop_seconds=5.0)
    converted = ClapEmbedder(bundle, hop_seconds=5.0)
    audio = _audio(seed=1)
    np.testing.assert_allclose(converted.embed(audio, 44100), reference.embed(audio, 44100), atol=1e-5)
    np.testing.assert_allclose(converted.embed_text(TEXTS), reference.embed_text(TEXTS), atol=1e-5)


def test_text_layer_norm_eps_is_read_off_the_text_branch(tiny_dir):
    """RoBERTa (one token type) -> roberta-base's 1e-5 in every text LayerNorm; BERT (two) -> 1e-12."""
    _, model = tiny_dir
    original = _to_original(model.state_dict())
    assert clap_config_from_original(original).text_config.layer_norm_eps == 1e-5
    built = model_from_original(original)
    text_norms = [m for m in built.text_model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert text_norms and all(m.eps == 1e-5 for m in text_norms)
    bert = dict(original)
    bert["module.text_branch.embeddings.token_type_embeddings.weight"] = torch.zeros(2, 64)
    assert clap_config_from_original(bert).text_config.layer_norm_eps == 1e-12


def test_transformers_dir_with_default_eps_is_flagged(tmp_path, caplog):
    from transformers import ClapModel

    from tests.evaluation.tiny_clap import tiny_config

    cfg = tiny_config()
    cfg.text_config.layer_norm_eps = 1e-12
    ClapModel(cfg).save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="evaluation.metrics.clap_model"):
        load_clap(str(tmp_path))
    assert "layer_norm_eps = 1e-12" in caplog.text


def test_missing_weights_name_the_param():
    with pytest.raises(ClapWeightsError, match="evaluate.clap_path"):
        load_clap("")
    with pytest.raises(ClapWeightsError, match="music_audioset_epoch_15_esc_90.14.pt"):
        load_clap("/nonexistent/clap.pt")
