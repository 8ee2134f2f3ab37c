import io

import pytest
import torch

TOKENIZER_CORPUS = [
    "upbeat rock song with electric guitar and drums",
    "calm ambient piano piece, slow and relaxing",
    "sad acoustic folk with strings and voice",
    "energetic electronic dance track with synth bass",
]


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory):
    """A randomly initialised 2-layer T5 encoder + a sentencepiece T5 tokenizer trained here, saved like a snapshot."""
    import sentencepiece as spm
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    out = tmp_path_factory.mktemp("tiny-flan-t5")
    model_bytes = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TOKENIZER_CORPUS * 10),
        model_writer=model_bytes,
        vocab_size=64,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        model_type="unigram",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (out / "spiece.model").write_bytes(model_bytes.getvalue())
    T5Tokenizer(vocab_file=str(out / "spiece.model"), extra_ids=0).save_pretrained(out)
    (out / "spiece.model").unlink()
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu"
    )
    T5EncoderModel(config).save_pretrained(out)
    return out
