import json
import math

import pytest
import torch

from model.audio.mel import hz_to_mel_slaney, mel_to_hz_slaney
from model.codec import build_codec
from model.codec.mel import MelCodec, MelCodecConfig
from pipelines.common.errors import ParamsError
from tests.defaults import config, section

SR = 22050


@pytest.fixture(scope="module")
def codec() -> MelCodec:
    return build_codec(section("codec", name="mel", device="cpu", mel={"griffin_lim_iters": 16}))


def tone(freq: float, seconds: float = 1.5, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    return (amp * torch.sin(2 * math.pi * freq * t))[None, None]


def peak_hz(wav: torch.Tensor) -> float:
    spec = torch.fft.rfft(wav.flatten() * torch.hann_window(wav.shape[-1]))
    return torch.fft.rfftfreq(wav.shape[-1], 1 / SR)[spec.abs().argmax()].item()


def band_spacing_hz(codec: MelCodec, freq: float) -> float:
    """Distance between adjacent mel band centres near ``freq`` (the codec's pitch resolution)."""
    c = codec.cfg
    lo, hi = (hz_to_mel_slaney(torch.tensor(f, dtype=torch.float64)).item() for f in (c.f_min, c.f_max))
    centres = mel_to_hz_slaney(torch.linspace(lo, hi, c.n_mels + 2, dtype=torch.float64))[1:-1]
    i = int((centres - freq).abs().argmin())
    return float((centres[min(i + 1, c.n_mels - 1)] - centres[max(i - 1, 0)]).item() / 2)


def test_attributes_and_settings_are_json(codec):
    assert (codec.name, codec.sample_rate, codec.channels, codec.latent_dim) == ("mel", SR, 1, 64)
    assert codec.frame_rate == pytest.approx(SR / 1024)
    assert 10 <= codec.frame_rate <= 25
    settings = json.loads(json.dumps(codec.settings()))
    assert settings["name"] == "mel" and settings["hop"] == 1024 and settings["latent_dim"] == 64


@pytest.mark.parametrize("n_samples", [1, 1024, 1025, SR * 2 + 17])
def test_frame_count_follows_frame_rate(codec, n_samples):
    z = codec.encode(torch.zeros(2, 1, n_samples))
    expected = math.ceil(n_samples / SR * codec.frame_rate - 1e-9)
    assert z.shape == (2, 64, expected) == (2, 64, codec.num_frames(n_samples))
    assert codec.decode(z).shape == (2, 1, expected * 1024)


def test_stereo_is_mixed_to_mono(codec):
    left, right = tone(440.0), tone(660.0)
    stereo = torch.cat([left, right], dim=1)
    torch.testing.assert_close(codec.encode(stereo), codec.encode((left + right) / 2))


@pytest.mark.parametrize("freq", [220.0, 440.0, 1000.0, 3000.0])
def test_decoded_tone_keeps_its_pitch_and_loudness(codec, freq):
    wav = tone(freq)
    z = codec.encode(wav)
    out = codec.decode(z)
    assert abs(peak_hz(out) - freq) <= 1.5 * band_spacing_hz(codec, freq)
    # re-encoding puts the energy in the same mel band as the original, frame by frame (edges excluded)
    z_again = codec.encode(out[..., : wav.shape[-1]])
    assert torch.equal(z[0, :, 3:-3].argmax(0), z_again[0, :, 3:-3].argmax(0))
    rms_in, rms_out = wav.pow(2).mean().sqrt(), out[..., : wav.shape[-1]].pow(2).mean().sqrt()
    assert 0.6 < (rms_out / rms_in).item() < 1.4


def test_silence_stays_silent(codec):
    z = codec.encode(torch.zeros(1, 1, SR))
    assert torch.allclose(z, torch.full_like(z, math.log(codec.cfg.log_floor)))
    assert codec.decode(z).abs().max().item() < 1e-3


def test_decode_is_deterministic_and_batch_independent(codec):
    z = torch.stack([codec.encode(tone(330.0))[0], codec.encode(tone(550.0))[0]])
    both = codec.decode(z)
    torch.testing.assert_close(both, codec.decode(z))
    torch.testing.assert_close(both[1:], codec.decode(z[1:]), atol=1e-5, rtol=1e-4)


def test_bad_inputs_and_params_are_named(codec):
    with pytest.raises(ValueError, match=r"\(B, C, N\)"):
        codec.encode(torch.zeros(1, 100))
    with pytest.raises(ValueError, match=r"\(B, 64, T\)"):
        codec.decode(torch.zeros(1, 32, 5))
    with pytest.raises(ParamsError, match="codec.mel.n_mel"):
        section("codec.mel", n_mel=64)
    with pytest.raises(ValueError, match="codec.mel.hop"):
        config(MelCodecConfig, "codec.mel", hop=4096)
    with pytest.raises(ValueError, match="codec.name"):
        build_codec(section("codec", name="wavenet"))
