"""The offline evaluation models do not depend on the thread count, run in float64, and pool text without oneDNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.metrics.clap_score import LocalClapConfig, pooled_text_features, train_local_clap
from evaluation.metrics.portable_numerics import TRAIN_DTYPE, portable_kernels
from evaluation.metrics.tagger import TaggerConfig, train_tagger
from tests.evaluation.metrics.test_clap_score import _paired
from tests.evaluation.metrics.test_tagger import _toy


def _train_both(threads: int):
    """160 clips x 256 hidden units: elementwise ops exceed ATen's parallel grain (32768), so threads split them."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, tags = _toy(160, seed=0)
        vx, vtags = _toy(40, seed=1)
        tagger = train_tagger(x, tags, vx, vtags, TaggerConfig(steps=4, hidden=256))
        audio, text, keys = _paired(160, seed=2)
        clap = train_local_clap(audio, text, keys, LocalClapConfig(steps=4, hidden=256))
    finally:
        torch.set_num_threads(previous)
    return tagger, clap


def test_trainings_are_bit_identical_with_one_or_two_threads():
    (tagger1, clap1), (tagger2, clap2) = _train_both(1), _train_both(2)
    for a, b in ((tagger1.net, tagger2.net), (clap1.towers, clap2.towers)):
        for (name, p1), p2 in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert p1.dtype == TRAIN_DTYPE and torch.equal(p1, p2), name
    np.testing.assert_array_equal(tagger1.thresholds, tagger2.thresholds)


def test_text_pooling_runs_with_onednn_off_and_restores_it():
    seen = []

    class Recorder:
        def encode(self, texts):
            seen.append(torch.backends.mkldnn.enabled)
            return torch.ones(len(texts), 2, 3), torch.ones(len(texts), 2, dtype=torch.bool)

    before = torch.backends.mkldnn.enabled
    assert pooled_text_features(Recorder(), ["a", "b", "c"], batch_size=2).shape == (3, 3)
    assert seen == [False, False] and torch.backends.mkldnn.enabled == before
    with pytest.raises(RuntimeError), portable_kernels():
        raise RuntimeError("restored on errors too")
    assert torch.backends.mkldnn.enabled == before
