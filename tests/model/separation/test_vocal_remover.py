"""Vocal removal: the real demucs HTDemucs class (tiny, random), its real loader, streaming and cross-fading."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from demucs.apply import apply_model
from demucs.htdemucs import HTDemucs
from demucs.states import get_state, save_with_checksum

from model.audio.io import AudioDecodeError
from model.audio.stream import crossfade_windows, iter_decoded, scan_audio
from model.separation.vocal_remover import (
    SeparationConfig,
    SeparationWeightsError,
    VocalRemover,
    load_demucs_model,
)
from tests.defaults import config

SOURCES = ["drums", "bass", "other", "vocals"]


def tiny_htdemucs(seed: int = 0) -> HTDemucs:
    torch.manual_seed(seed)
    return HTDemucs(sources=SOURCES, segment=4, channels=16, t_layers=1, t_heads=4).eval()


def save_local_repo(model: HTDemucs, repo, name: str = "tinyht", sig: str = "0a1b2c3d") -> None:
    """demucs' local-repo layout: ``<sig>-<sha256[:8]>.th`` (klass/args/kwargs/state) + ``<name>.yaml`` bag."""
    args, kwargs = model._init_args_kwargs
    package = {
        "klass": type(model),
        "args": args,
        "kwargs": kwargs,
        "state": get_state(model, None, half=False),
    }
    save_with_checksum(package, repo / f"{sig}.th")
    (repo / f"{name}.yaml").write_text(yaml.safe_dump({"models": [sig]}))


@pytest.fixture(scope="module")
def model() -> HTDemucs:
    return tiny_htdemucs()


def stereo(seconds: float, sr: int = 44100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    return np.stack([tone, np.roll(tone, 50)]).astype(np.float32) + 0.05 * rng.standard_normal(
        (2, t.size)
    ).astype(np.float32)


def test_instrumental_is_the_sum_of_non_vocal_stems(model):
    cfg = config(SeparationConfig, "separate", model="htdemucs", segment=4.0, block_seconds=9.0, device="cpu")
    remover = VocalRemover(model, cfg)
    mix = stereo(2.0)
    inst = remover.instrumental(mix)
    assert inst.shape == mix.shape and inst.dtype == np.float32
    with torch.no_grad():
        stems = apply_model(
            model, torch.from_numpy(mix)[None], shifts=0, split=True, overlap=0.25, segment=4.0
        )[0]
    expected = stems[:3].sum(0).numpy()
    with_vocals = stems.sum(0).numpy()
    np.testing.assert_allclose(inst, expected, atol=1e-5)
    assert np.abs(inst - with_vocals).max() > 1e-3  # the vocals stem really was left out
    assert remover.keep == [0, 1, 2] and remover.sources[3] == "vocals"


def test_separate_file_resamples_streams_and_writes_model_rate(model, tmp_path):
    cfg = config(SeparationConfig, "separate", model="htdemucs", segment=1.0, block_seconds=3.0, device="cpu")
    remover = VocalRemover(model, cfg)
    src = tmp_path / "mix.wav"
    sf.write(src, stereo(4.5, sr=22050).T, 22050)  # 4.5 s at 22.05 kHz -> two cross-faded windows at 44.1 kHz
    out = tmp_path / "out" / "inst.flac"
    seconds = remover.separate_file(src, out)
    data, sr = sf.read(out, always_2d=True)
    assert sr == 44100 and data.shape == (int(4.5 * 44100), 2)
    assert seconds == pytest.approx(4.5, abs=1e-3)
    assert np.isfinite(data).all() and np.abs(data).max() > 0
    assert not list(out.parent.glob(".*tmp*"))  # no temporary left behind


def test_local_repo_roundtrip_through_demucs_loader(model, tmp_path):
    save_local_repo(model, tmp_path)
    loaded = load_demucs_model("tinyht", tmp_path)
    mix = torch.from_numpy(stereo(1.0))[None]
    with torch.no_grad():
        a = apply_model(model, mix, shifts=0, segment=4.0)
        b = apply_model(loaded, mix, shifts=0, segment=4.0)
    torch.testing.assert_close(a, b)
    remover = VocalRemover.from_config(
        config(
            SeparationConfig,
            "separate",
            model="tinyht",
            weights_dir=str(tmp_path),
            segment=7.8,
            block_seconds=20.0,
            device="cpu",
        )
    )
    assert remover.segment == 4.0  # capped at the model's training length


def test_missing_or_empty_weights_dir_says_what_to_do(tmp_path):
    for repo in (tmp_path / "absent", tmp_path):
        with pytest.raises(
            SeparationWeightsError, match=r"separate\.weights_dir.*955717e8-8726e21a\.th.*htdemucs\.yaml"
        ):
            load_demucs_model("htdemucs", repo)
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(SeparationWeightsError, match="could not load 'htdemucs'"):
        load_demucs_model("htdemucs", tmp_path)


@pytest.mark.parametrize("n", [1, 99, 100, 101, 250, 333])
def test_crossfade_windows_reproduce_a_pointwise_processor_exactly(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((2, n)).astype(np.float32)
    chunks = [x[:, i : i + 37] for i in range(0, n, 37)]
    out = np.concatenate(list(crossfade_windows(chunks, np.tanh, window=100, fade=20)), axis=1)
    np.testing.assert_allclose(out, np.tanh(x), atol=1e-6)


def test_decode_checks_reject_truncated_and_empty(tmp_path):
    good = tmp_path / "good.mp3"
    sf.write(good, stereo(3.0).T, 44100, format="MP3")
    truncated = tmp_path / "truncated.mp3"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    empty = tmp_path / "empty.wav"
    empty.touch()
    scan = scan_audio(good)
    assert scan.seconds == pytest.approx(3.0, abs=0.01) and scan.std > 0.1
    with pytest.raises(AudioDecodeError, match="truncated"):
        scan_audio(truncated)
    with pytest.raises(AudioDecodeError, match="empty"):
        list(iter_decoded(empty))
