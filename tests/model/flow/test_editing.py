import numpy as np
import pytest
import torch

from model.codec.mel import MelCodec, MelCodecConfig
from model.data.stats import Standardiser
from model.flow.editing import (
    EditError,
    KnownRegion,
    MusicEditor,
    check_region,
    region_frames,
    renoise,
    sample_with_known,
    splice_weights,
)
from model.flow.sampling import SamplerConfig
from model.flow.text_to_music import TextToMusic
from model.flow.trained import TrainedModel
from model.network.backbone import VelocityNet
from model.text import build_text_encoder
from tests.defaults import config, net_config

D, T = 4, 12


def oracle(x_star: torch.Tensor):
    """The exact marginal velocity when the data is the single point x*: u(x, t) = (x* − x) / (1 − t)."""
    return lambda x, t: (x_star - x) / (1.0 - t)


@pytest.mark.parametrize(
    ("method", "repeats"), [("euler", 1), ("midpoint", 1), ("euler", 3), ("midpoint", 2)]
)
def test_oracle_field_gives_back_the_known_region_and_the_oracle_answer_elsewhere(method, repeats):
    g = torch.Generator().manual_seed(0)
    x_star = torch.randn(2, D, T, generator=g, dtype=torch.float64)
    x_known = torch.randn(2, D, T, generator=g, dtype=torch.float64) + 3.0  # not the oracle's answer
    mask = torch.zeros(2, T, dtype=torch.bool)
    mask[0, :5] = True  # continuation
    mask[1, :3] = mask[1, 9:] = True  # inpainting: frames 3..8 generated, known on both sides
    noise = torch.randn(2, D, T, generator=g, dtype=torch.float64)
    out = sample_with_known(
        oracle(x_star),
        noise,
        KnownRegion(x_known, mask),
        steps=7,
        method=method,
        repeats=repeats,
        generator=torch.Generator().manual_seed(1),
    )
    m = mask[:, None, :].expand_as(out)
    torch.testing.assert_close(out[m], x_known[m], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[~m], x_star[~m], rtol=0, atol=1e-10)


def test_known_frames_stay_on_their_path_at_every_step():
    seen = []

    def field(x, t):
        seen.append((t, x.clone()))
        return torch.zeros_like(x)

    noise, known = torch.randn(1, D, T), torch.randn(1, D, T)
    mask = torch.arange(T)[None] < 4
    sample_with_known(field, noise, KnownRegion(known, mask), steps=5)
    for t, x in seen:
        torch.testing.assert_close(x[..., :4], (1 - t) * noise[..., :4] + t * known[..., :4])
        torch.testing.assert_close(x[..., 4:], noise[..., 4:])  # a zero field leaves the rest at the noise


def test_renoise_matches_the_path_variance():
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(200_000, generator=g)  # data with unit variance, noise independent
    z = torch.randn(200_000, generator=g)
    t_from, t_to = 0.7, 0.4
    back = renoise((1 - t_from) * z + t_from * x1, t_from, t_to, g)
    # on the path x_t = (1 − t)·z + t·x the data share is t and the total variance (1 − t)² + t²
    assert float(back.var()) == pytest.approx((1 - t_to) ** 2 + t_to**2, rel=0.02)
    assert float((back * x1).mean()) == pytest.approx(t_to, abs=0.01)


def test_regions_outside_the_audio_are_refused_with_the_duration():
    with pytest.raises(EditError, match=r"ends after the input, which is 8\.000 s long"):
        check_region(4.0, 9.0, 8.0)
    with pytest.raises(EditError, match="START < END"):
        check_region(5.0, 4.0, 8.0)
    with pytest.raises(EditError, match="START < END"):
        check_region(-1.0, 2.0, 8.0)
    assert region_frames(4.0, 6.5, 10.0, 100) == (40, 65)
    assert region_frames(4.01, 4.02, 10.0, 100) == (40, 41)


def test_splice_weights_keep_known_audio_and_ramp_inside_the_span():
    generated = np.zeros(100, dtype=bool)
    generated[40:70] = True
    w = splice_weights(generated, fade=5)
    assert (w[:40] == 1).all() and (w[70:] == 1).all() and (w[46:64] == 0).all()
    assert (np.diff(w[39:46]) < 0).all() and (np.diff(w[64:71]) > 0).all()


CODEC = config(
    MelCodecConfig,
    "codec.mel",
    sample_rate=22050,
    n_fft=512,
    hop=256,
    n_mels=16,
    f_max=11025.0,
    griffin_lim_iters=16,
    inversion_iters=10,
)


def _tone(seconds: float, sr: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t)
    return (0.3 * env * (np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 1250 * t)))[None].astype(
        np.float32
    )


@pytest.fixture(scope="module")
def trained_engine():
    """A tiny VelocityNet trained for 60 flow-matching steps on the mel latents of tone clips."""
    torch.manual_seed(0)
    codec = MelCodec(CODEC)
    text = build_text_encoder({"encoder": "minilm", "path": "", "max_length": 16})
    z = codec.encode(torch.from_numpy(np.stack([_tone(3.0) * a for a in (0.5, 1.0, 1.5)])))
    stats = Standardiser(tuple(z.mean(dim=(0, 2)).tolist()), tuple(z.var(dim=(0, 2)).tolist()))
    x = stats.standardise(z)
    cfg = net_config(
        latent_dim=16,
        text_dim=text.dim,
        hidden=32,
        depth=1,
        d_state=4,
        heads=2,
        time_dim=16,
        scan_backend="torch",
    )
    net = VelocityNet(cfg)
    emb, mask = text.encode(["tone"] * x.shape[0])
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        noise, t = torch.randn_like(x), torch.rand(x.shape[0])
        xt = (1 - t[:, None, None]) * noise + t[:, None, None] * x
        loss = torch.mean((net(xt, t, emb, mask) - (x - noise)) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    net.eval().requires_grad_(False)
    trained = TrainedModel(net, cfg, {}, {}, stats, 60, {})
    return TextToMusic(trained, text, codec, "cpu", "fp32")


def test_trained_model_inpainting_keeps_the_known_region_within_the_codec_round_trip(trained_engine):
    codec = trained_engine.codec
    audio = _tone(4.0)
    editor = MusicEditor(trained_engine)
    result = editor.inpaint(
        "tone",
        audio,
        22050,
        1.5,
        2.5,
        SamplerConfig(steps=6, cfg_scale=2.0, method="euler"),
        torch.Generator().manual_seed(0),
    )
    assert result.audio.shape == (2, 4 * 44100)
    # the known latents come back exactly (standardised space), the span does not
    z_in = editor.known_latents(audio, 22050, result.known.shape[0])
    torch.testing.assert_close(result.latents[..., result.known], z_in[..., result.known], rtol=0, atol=1e-5)
    assert not torch.allclose(result.latents[..., ~result.known], z_in[..., ~result.known], atol=0.1)
    # decoded known region vs the input, measured like the codec's own round trip: log-mel distance
    ref = codec.encode(torch.from_numpy(audio)[None])
    n = ref.shape[-1]
    round_trip = codec.encode(codec.decode(ref))[..., :n]
    decoded = torch.from_numpy(np.ascontiguousarray(result.decoded.mean(axis=0)))[None, None]
    from model.audio.io import resample

    decoded = torch.from_numpy(resample(decoded[0].numpy(), 44100, 22050))[None]
    out = codec.encode(decoded)[..., :n]
    margin = CODEC.n_fft // CODEC.hop + 1  # frames whose STFT window reaches across the seam
    f0, f1 = region_frames(1.5, 2.5, codec.frame_rate, n)
    far = torch.zeros(n, dtype=torch.bool)
    far[: f0 - margin] = True
    far[f1 + margin :] = True
    err_out = (out - ref)[..., far].abs().mean()
    err_rt = (round_trip - ref)[..., far].abs().mean()
    assert err_out <= 1.05 * err_rt, (float(err_out), float(err_rt))
    # the spliced output is the input itself outside the span
    from model.audio.io import to_channels

    original = to_channels(resample(audio, 22050, 44100), 2)
    np.testing.assert_allclose(
        result.audio[:, : int(1.5 * 44100)], original[:, : int(1.5 * 44100)], atol=1e-6
    )
    np.testing.assert_allclose(
        result.audio[:, int(2.5 * 44100) :], original[:, int(2.5 * 44100) :], atol=1e-6
    )


def test_continuation_keeps_the_input_and_extends_it(trained_engine):
    audio = _tone(2.0)
    editor = MusicEditor(trained_engine)
    result = editor.continue_audio(
        "tone",
        audio,
        22050,
        3.0,
        SamplerConfig(steps=3, cfg_scale=1.0, method="euler"),
        torch.Generator().manual_seed(0),
    )
    assert result.audio.shape == (2, 3 * 44100)
    assert result.known[: int(2.0 * trained_engine.codec.frame_rate)].all() and not result.known[-1]
    assert result.generated[2 * 44100 :].all() and not result.generated[: 2 * 44100].any()
    with pytest.raises(EditError, match="not longer than the input"):
        editor.continue_audio(
            "tone",
            audio,
            22050,
            1.5,
            SamplerConfig(steps=1, cfg_scale=1.0, method="euler"),
            torch.Generator(),
        )
