"""A tiny randomly initialised Qwen2-Audio (the real transformers class) with a locally trained tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
]
CORPUS = [
    "system You are a helpful assistant. user Audio 1: Is this music in the rock genre? Answer yes or no.",
    "Can you hear piano in this music? Does this music sound happy? Does this music match the description",
    "assistant Yes. assistant No. yes no Yes No yes no",
]


def tiny_tokenizer():
    """A byte-level BPE tokenizer with Qwen2-Audio's special tokens, trained on a few lines (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def save_tiny_alm(directory: Path, seed: int = 0):
    """Write a tiny Qwen2-Audio model + processor (Whisper front end, 128 mels, 16 kHz) to ``directory``."""
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    tokenizer = tiny_tokenizer()
    processor = Qwen2AudioProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=128, sampling_rate=16000), tokenizer=tokenizer
    )
    config = Qwen2AudioConfig(
        audio_config=dict(
            d_model=16,
            encoder_layers=1,
            encoder_attention_heads=2,
            encoder_ffn_dim=32,
            num_mel_bins=128,
            max_source_positions=1500,
        ),
        text_config=dict(
            model_type="qwen2",
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
        ),
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config).eval()
    processor.save_pretrained(directory)
    model.save_pretrained(directory)
    return model


OMNI_SPECIAL_TOKENS = {
    "audio_token": "<|audio_pad|>",
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "audio_bos_token": "<|audio_start|>",
    "audio_eos_token": "<|audio_end|>",
    "vision_bos_token": "<|vision_start|>",
    "vision_eos_token": "<|vision_end|>",
}
# a small chat template of the same shape as Qwen3-Omni's for audio + text turns (written for these tests)
OMNI_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'audio' %}<|audio_start|><|audio_pad|><|audio_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_omni_tokenizer():
    """Byte-level BPE with Qwen3-Omni's special tokens, named as its processor reads them (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *OMNI_SPECIAL_TOKENS.values()]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(OMNI_SPECIAL_TOKENS),
    )


def save_tiny_omni(directory: Path, seed: int = 0, thinker_only: bool = False):
    """Write a tiny Qwen3-Omni snapshot to ``directory``: config + weights of the real classes
    (``Qwen3OmniMoeForConditionalGeneration`` without talker, or its thinker alone), tokenizer, Whisper feature
    extractor (128 mels, 16 kHz) and a processor chat template — the files a real snapshot has."""
    import json

    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration, WhisperFeatureExtractor

    tokenizer = tiny_omni_tokenizer()
    ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in OMNI_SPECIAL_TOKENS.items()}
    thinker = dict(
        audio_config=dict(
            d_model=16,
            encoder_layers=1,
            encoder_attention_heads=2,
            encoder_ffn_dim=32,
            num_mel_bins=128,
            output_dim=32,
            downsample_hidden_size=8,
        ),
        vision_config=dict(
            depth=1,
            hidden_size=16,
            intermediate_size=32,
            num_heads=2,
            out_hidden_size=32,
            deepstack_visual_indexes=[0],
            num_position_embeddings=16,
        ),
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            moe_intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            num_experts=4,
            num_experts_per_tok=2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, 1]},
        ),
        audio_token_id=ids["audio_token"],
        image_token_id=ids["image_token"],
        video_token_id=ids["video_token"],
        audio_start_token_id=ids["audio_bos_token"],
        vision_start_token_id=ids["vision_bos_token"],
    )
    torch.manual_seed(seed)
    model = Qwen3OmniMoeForConditionalGeneration(
        Qwen3OmniMoeConfig(thinker_config=thinker, enable_audio_output=False)
    ).eval()
    (model.thinker if thinker_only else model).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    WhisperFeatureExtractor(feature_size=128, sampling_rate=16000).save_pretrained(directory)
    config = json.loads((directory / "preprocessor_config.json").read_text())
    config.update(
        processor_class="Qwen3OmniMoeProcessor", image_processor_type="Qwen2VLImageProcessor"
    )  # as real
    (directory / "preprocessor_config.json").write_text(json.dumps(config, indent=2))
    (directory / "chat_template.jinja").write_text(OMNI_CHAT_TEMPLATE)
    return model


def write_tone_clips(root: Path) -> np.ndarray:
    """Two 10.5 s stereo 44.1 kHz WAVs in ``root`` (220 and 550 Hz tones with a little seeded noise): the clips the
    judge tests score. Returns their paths."""
    from model.audio.io import write_audio

    rng = np.random.default_rng(0)
    t = np.arange(int(44100 * 10.5)) / 44100
    paths = []
    for i, freq in enumerate((220.0, 550.0)):
        tone = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
        path = root / f"clip{i}.wav"
        write_audio(path, np.stack([tone, tone]).astype(np.float32), 44100)
        paths.append(str(path))
    return np.array(paths)
