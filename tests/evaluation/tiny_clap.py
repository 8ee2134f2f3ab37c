"""A tiny randomly initialised CLAP (transformers format, with processor and tokenizer) for tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from evaluation.metrics.clap_model import original_feature_extractor

TEXTS = ["calm piano ballad", "energetic rock with drums and guitar", "sad ambient strings"]


def tiny_config():
    from transformers import ClapConfig

    return ClapConfig(
        text_config=dict(
            vocab_size=300,
            hidden_size=64,
            num_hidden_layers=1,
            num_attention_heads=1,
            intermediate_size=48,
            max_position_embeddings=40,
            layer_norm_eps=1e-5,
        ),  # LAION-CLAP's RoBERTa eps
        audio_config=dict(
            patch_embeds_hidden_size=8,
            depths=[1, 1],
            num_attention_heads=[2, 4],
            hidden_size=16,
            window_size=8,
            spec_size=256,
            num_mel_bins=64,
        ),
        projection_dim=12,
    )


def tiny_tokenizer(directory: Path, corpus: list[str] | None = None):
    """A byte-level BPE RoBERTa tokenizer trained on a few captions (no download)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        (corpus or TEXTS) * 20,
        vocab_size=300,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    directory.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(directory))
    vocab = json.loads((directory / "vocab.json").read_text())
    merges = [tuple(line.split()) for line in (directory / "merges.txt").read_text().splitlines()[1:] if line]
    return RobertaTokenizer(vocab=vocab, merges=merges)


def save_tiny_clap(root: Path, seed: int = 0):
    """Write a tiny transformers CLAP directory to ``root / 'hf'``; returns (dir, model)."""
    from transformers import ClapModel, ClapProcessor

    torch.manual_seed(seed)
    model = ClapModel(tiny_config()).eval()
    tokenizer = tiny_tokenizer(root / "tok")
    ClapProcessor(feature_extractor=original_feature_extractor(), tokenizer=tokenizer).save_pretrained(
        root / "hf"
    )
    model.save_pretrained(root / "hf")
    return root / "hf", model
