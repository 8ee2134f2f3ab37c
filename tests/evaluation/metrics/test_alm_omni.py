"""The ALM judge on Qwen3-Omni: a tiny random Qwen3-Omni of the real transformers classes (no downloads), chosen
from the checkpoint's config, with the same yes/no-per-concept protocol as Qwen2-Audio."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from evaluation.metrics.alm_judge import AlmJudge, load_alm, question
from evaluation.metrics.alm_models import AlmWeightsError
from tests.evaluation.tiny_alm import save_tiny_alm, save_tiny_omni, write_tone_clips


@pytest.fixture(scope="module")
def omni_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("omni")
    save_tiny_omni(directory)
    return directory


@pytest.fixture(scope="module")
def judge(omni_dir):
    return AlmJudge(load_alm(str(omni_dir), device="cpu"), batch_size=3)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_tone_clips(tmp_path_factory.mktemp("clips"))


def test_the_config_chooses_the_qwen3_omni_thinker_and_its_processor(judge, omni_dir):
    from transformers import Qwen3OmniMoeProcessor, Qwen3OmniMoeThinkerForConditionalGeneration

    assert json.loads((omni_dir / "config.json").read_text())["model_type"] == "qwen3_omni_moe"
    bundle = judge.bundle
    assert isinstance(bundle.model, Qwen3OmniMoeThinkerForConditionalGeneration)
    assert not hasattr(bundle.model, "talker")  # only the thinker answers; the speaking parts are never built
    assert isinstance(bundle.processor, Qwen3OmniMoeProcessor) and bundle.family == "Qwen3-Omni"
    assert "Qwen3-Omni" in judge.name and judge.sample_rate == 16000
    tok = bundle.processor.tokenizer
    assert {tok.decode([i]).strip().lower() for i in bundle.yes_ids} == {"yes"}
    assert {tok.decode([i]).strip().lower() for i in bundle.no_ids} == {"no"}


def test_probability_is_the_thinkers_next_token_yes_vs_no(judge, clips):
    """Same number through the full conditional-generation forward (logits of the whole sequence)."""
    audio, q = judge.clip_audio(clips[0]), question("genre", "rock")
    p = judge.yes_probability([audio], [q])
    processor, model = judge.bundle.processor, judge.bundle.model
    text = judge.prompt(q)
    assert "<|audio_start|><|audio_pad|><|audio_end|>" in text and text.endswith("assistant\n")
    inputs = processor(text=[text], audio=[audio], sampling_rate=16000, return_tensors="pt")
    assert (inputs["input_ids"] == model.config.audio_token_id).sum() == 130  # 10 s -> 130 audio tokens
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    yes = torch.logsumexp(logits[list(judge.bundle.yes_ids)], 0)
    no = torch.logsumexp(logits[list(judge.bundle.no_ids)], 0)
    np.testing.assert_allclose(p, [torch.softmax(torch.stack([yes, no]), 0)[0].item()], rtol=1e-5)
    assert 0.0 < p[0] < 1.0
    assert judge.yes_probability([judge.clip_audio(clips[1])], [q])[0] != pytest.approx(p[0], abs=1e-7)
    assert judge.yes_probability([audio], [question("mood", "sad")])[0] != pytest.approx(p[0], abs=1e-7)


def test_batching_and_padding_do_not_change_the_answers(judge, clips):
    concepts = [
        {"genre": ["rock"], "instrument": ["piano", "drums"], "mood": ["happy"]},
        {"genre": ["jazz"], "concept": ["a calm late-night saxophone solo"]},
    ]
    batched = judge.judge(clips, concepts)
    p_batched = np.concatenate(judge.last_probabilities)
    one = AlmJudge(judge.bundle, batch_size=1)
    assert one.judge(clips, concepts) == batched
    np.testing.assert_allclose(p_batched, np.concatenate(one.last_probabilities), atol=1e-5)
    assert [len(j) for j in batched] == [4, 2]


def test_a_thinker_saved_alone_loads_and_answers_the_same(judge, clips, tmp_path):
    from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

    save_tiny_omni(tmp_path, thinker_only=True)  # same seed: the same weights
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "qwen3_omni_moe_thinker"
    alone = AlmJudge(load_alm(str(tmp_path), device="cpu"), batch_size=2)
    assert type(alone.bundle.model) is Qwen3OmniMoeThinkerForConditionalGeneration
    audio, q = judge.clip_audio(clips[0]), question("instrument", "piano")
    np.testing.assert_allclose(
        alone.yes_probability([audio], [q]), judge.yes_probability([audio], [q]), rtol=1e-6
    )


def test_qwen2_audio_and_unknown_checkpoints_are_told_apart_by_their_config(tmp_path):
    save_tiny_alm(tmp_path / "qwen2")
    assert load_alm(str(tmp_path / "qwen2"), device="cpu").family == "Qwen2-Audio"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(AlmWeightsError, match=r"evaluate.alm_path .*model_type 'whisper'.*qwen3_omni_moe"):
        load_alm(str(tmp_path / "other"), device="cpu")
