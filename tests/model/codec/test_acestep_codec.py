import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderDC

from model.codec import build_codec
from model.codec.acestep import SCALE_FACTOR, SHIFT_FACTOR, AceStepCodec
from model.codec.acestep_snapshot import (
    DCAE_SUBDIR,
    VOCODER_SUBDIR,
    SnapshotError,
    load_vocoder,
    require_snapshot,
    save_vocoder,
)
from model.codec.acestep_vocoder import AceStepVocoder, VocoderConfig
from tests.defaults import section

SR = 44100
BLOCKS = ("ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock")
# ACE-Step's music_dcae_f8c8 structure (block types, depths, multiscale attention, Conv down / interpolate up,
# RMSNorm + SiLU decoder) with tiny widths.
TINY_DCAE = dict(
    in_channels=2,
    latent_channels=8,
    attention_head_dim=8,
    encoder_block_types=BLOCKS,
    decoder_block_types=BLOCKS,
    encoder_block_out_channels=(8, 16, 16, 32),
    decoder_block_out_channels=(8, 16, 16, 32),
    encoder_layers_per_block=(2, 2, 3, 3),
    decoder_layers_per_block=(3, 3, 3, 3),
    encoder_qkv_multiscales=((), (), (5,), (5,)),
    decoder_qkv_multiscales=((), (), (5,), (5,)),
    upsample_block_type="interpolate",
    downsample_block_type="Conv",
    decoder_norm_types="rms_norm",
    decoder_act_fns="silu",
    scaling_factor=0.41407,
)
TINY_VOCODER = VocoderConfig(
    depths=(1, 1),
    dims=(8, 16),
    upsample_rates=(8, 8, 8),
    upsample_kernel_sizes=(16, 16, 16),
    resblock_kernel_sizes=(3,),
    resblock_dilation_sizes=((1, 3, 5),),
    num_mels=16,
    upsample_initial_channel=16,
    pre_conv_kernel_size=7,
    post_conv_kernel_size=7,
)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """A fake ACE-Step-v1-3.5B snapshot holding tiny random models of the real classes."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ACE-Step-v1-3.5B")
    AutoencoderDC(**TINY_DCAE).save_pretrained(root / DCAE_SUBDIR)
    save_vocoder(AceStepVocoder(TINY_VOCODER), root / VOCODER_SUBDIR)
    return root


@pytest.fixture(scope="module")
def codec(snapshot) -> AceStepCodec:
    return build_codec(section("codec", name="acestep", acestep_dir=str(snapshot), device="cpu"))


def stereo(seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(SR * seconds)) / SR
    tone = torch.stack([torch.sin(2 * math.pi * 220 * t), torch.sin(2 * math.pi * 330 * t)])
    return (0.3 * tone + 0.05 * torch.randn(2, t.numel(), generator=g))[None]


def test_tiny_dcae_round_trips_a_mel_image():
    model = AutoencoderDC(**TINY_DCAE).eval()
    with torch.no_grad():
        z = model.encoder(torch.randn(1, 2, 128, 256))
        out = model.decoder(z)
    assert z.shape == (1, 8, 16, 32) and out.shape == (1, 2, 128, 256)
    assert torch.isfinite(out).all()


def test_encode_decode_shapes_and_frame_rate(codec):
    assert (codec.sample_rate, codec.channels, codec.latent_dim) == (SR, 2, 128)
    assert codec.frame_rate == pytest.approx(10.766, abs=1e-3)
    wav = stereo(1.3).repeat(2, 1, 1)
    z = codec.encode(wav)
    n = wav.shape[-1]
    assert z.shape == (2, 128, codec.num_frames(n)) == (2, 128, math.ceil(n / 4096))
    assert abs(z.shape[-1] - n / SR * codec.frame_rate) < 1
    out = codec.decode(z)
    assert out.shape == (2, 2, z.shape[-1] * 4096) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0
    json.dumps(codec.settings())


def test_encode_follows_ace_step_recipe(codec):
    wav = stereo(1.0, seed=1)
    padded = torch.nn.functional.pad(wav, (0, 4096 - wav.shape[-1] % 4096))
    mel = codec.vocoder.mel_transform(padded)
    assert mel.shape == (1, 2, 128, padded.shape[-1] // 512)
    image = ((mel - (-11.0)) / 14.0 - 0.5) / 0.5
    with torch.no_grad():
        latent = codec.dcae.encoder(image)
    expected = ((latent - SHIFT_FACTOR) * SCALE_FACTOR).reshape(1, 128, -1)
    torch.testing.assert_close(codec.encode(wav), expected)
    # a right-padded input encodes the same; mono is duplicated to both channels like ACE-Step's load_audio
    torch.testing.assert_close(codec.encode(padded), expected)
    mono = wav[:, :1]
    torch.testing.assert_close(codec.encode(mono), codec.encode(mono.repeat(1, 2, 1)))


def test_decode_follows_ace_step_recipe(codec):
    z = torch.randn(1, 128, 3)
    with torch.no_grad():
        mel = codec.dcae.decoder(z.reshape(1, 8, 16, 3) / SCALE_FACTOR + SHIFT_FACTOR)
        mel = (mel * 0.5 + 0.5) * 14.0 - 11.0
        left, right = (codec.vocoder.decode(mel[:, ch]) for ch in range(2))
    torch.testing.assert_close(codec.decode(z), torch.cat([left, right], dim=1))


def test_log_mel_matches_a_numpy_reference(codec):
    """ACE-Step's front end: reflect pad (768, 768), uncentred Hann STFT, sqrt(|X|² + 1e-6), Slaney mel, log."""
    x = stereo(0.5, seed=2)[0, 0].double().numpy()[: 512 * 20]
    padded = np.pad(x, (768, 768), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2048) / 2048)
    frames = np.stack([padded[i * 512 : i * 512 + 2048] * window for i in range(20)], axis=1)
    spec = np.fft.rfft(frames, axis=0)
    mag = np.sqrt(spec.real**2 + spec.imag**2 + 1e-6)
    fb = codec.vocoder.mel_transform.mel_scale.fb.double().numpy()
    expected = np.log(np.maximum(fb.T @ mag, 1e-5))
    got = codec.vocoder.mel_transform(torch.from_numpy(x).float()[None])[0].double().numpy()
    assert got.shape == (128, 20)
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_vocoder_keys_match_the_music_vocoder_checkpoint():
    """Key names/shapes of ACE-Step's ADaMoSHiFiGANV1 with its default config (= music_vocoder/config.json)."""
    state = AceStepVocoder().state_dict()
    expected = {
        "backbone.channel_layers.0.0.weight": (128, 128, 7),
        "backbone.channel_layers.0.1.bias": (128,),
        "backbone.channel_layers.3.0.weight": (384,),
        "backbone.channel_layers.3.1.weight": (512, 384, 1),
        "backbone.stages.2.8.dwconv.weight": (384, 1, 7),
        "backbone.stages.2.8.gamma": (384,),
        "backbone.stages.3.2.pwconv1.weight": (2048, 512),
        "backbone.stages.3.2.norm.bias": (512,),
        "backbone.norm.weight": (512,),
        "head.conv_pre.weight_g": (1024, 1, 1),
        "head.conv_pre.weight_v": (1024, 512, 13),
        "head.ups.0.weight_g": (1024, 1, 1),
        "head.ups.0.weight_v": (1024, 512, 8),
        "head.ups.6.bias": (8,),
        "head.resblocks.0.convs1.1.weight_v": (512, 512, 3),
        "head.resblocks.27.convs2.2.weight_v": (8, 8, 13),
        "head.conv_post.weight_v": (1, 8, 13),
        "mel_transform.spectrogram.window": (2048,),
        "mel_transform.mel_scale.fb": (1025, 128),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    # backbone 2 + 2 + 3·4 + 18 blocks·9 + 2; head 3 + 7·3 + 28 resblocks·6·3 + 3; front end 2
    assert len(state) == 180 + 531 + 2
    assert not any("noise_convs" in k or "parametrizations" in k for k in state)


def test_weight_norm_convs_compute_what_torch_weight_norm_does():
    from model.codec.acestep_vocoder import WeightNormConv1d, WeightNormConvTranspose1d

    ref = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 6, 3, padding=2, dilation=2))
    ours = WeightNormConv1d(4, 6, 3, dilation=2, padding=2)
    ours.weight_g.data = torch.rand(6, 1, 1) + 0.5
    ours.weight_v.data, ours.bias.data = ref.parametrizations.weight.original1.data, ref.bias.data
    ref.parametrizations.weight.original0.data = ours.weight_g.data.clone()
    x = torch.randn(2, 4, 11)
    torch.testing.assert_close(ours(x), ref(x))
    ref_t = torch.nn.utils.parametrizations.weight_norm(torch.nn.ConvTranspose1d(4, 3, 8, 4, padding=2))
    ours_t = WeightNormConvTranspose1d(4, 3, 8, 4, 2)
    ours_t.weight_g.data = ref_t.parametrizations.weight.original0.data * 1.7
    ref_t.parametrizations.weight.original0.data = ours_t.weight_g.data.clone()
    ours_t.weight_v.data, ours_t.bias.data = ref_t.parametrizations.weight.original1.data, ref_t.bias.data
    torch.testing.assert_close(ours_t(x), ref_t(x))


def test_vocoder_loads_strictly(snapshot, tmp_path):
    folder = tmp_path / VOCODER_SUBDIR
    shutil.copytree(snapshot / VOCODER_SUBDIR, folder)
    from safetensors.torch import load_file, save_file

    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    original = load_vocoder(folder)
    # older checkpoints without the deterministic front-end buffers still load (rebuilt from the config)
    save_file({k: v for k, v in state.items() if not k.startswith("mel_transform.")}, str(weights))
    torch.testing.assert_close(load_vocoder(folder).state_dict(), original.state_dict())
    # .bin checkpoints too
    weights.unlink()
    torch.save(state, folder / "diffusion_pytorch_model.bin")
    torch.testing.assert_close(load_vocoder(folder).state_dict(), original.state_dict())
    # a missing weight is an error, never a silent random init
    torch.save(
        {k: v for k, v in state.items() if k != "head.conv_post.bias"}, folder / "diffusion_pytorch_model.bin"
    )
    with pytest.raises(RuntimeError, match="head.conv_post.bias"):
        load_vocoder(folder)


def test_missing_snapshot_names_the_param(tmp_path):
    with pytest.raises(SnapshotError, match="codec.acestep_dir") as err:
        build_codec(section("codec", name="acestep", acestep_dir=""))
    assert "huggingface-cli download ACE-Step/ACE-Step-v1-3.5B" in str(err.value)
    with pytest.raises(SnapshotError, match="codec.acestep_dir"):
        require_snapshot(tmp_path / "nowhere")
    (tmp_path / DCAE_SUBDIR).mkdir()
    with pytest.raises(SnapshotError, match=r"music_dcae_f8c8/config.json"):
        require_snapshot(tmp_path)


def test_bad_acestep_params_are_named():
    with pytest.raises(ValueError, match="codec.acestep.dtype"):
        build_codec(section("codec", name="acestep", acestep={"dtype": "float64"}))
    with pytest.raises(ValueError, match="codec.acestep.dtyp"):
        section("codec", name="acestep", acestep={"dtyp": "float32"})


def test_dcae_with_missing_or_extra_weights_is_an_error(snapshot, tmp_path):
    from safetensors.torch import load_file, save_file

    from model.codec.acestep_snapshot import load_dcae

    folder = tmp_path / DCAE_SUBDIR
    shutil.copytree(snapshot / DCAE_SUBDIR, folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state.pop("decoder.conv_out.bias")
    save_file(state, str(weights))
    with pytest.raises(RuntimeError, match="decoder.conv_out.bias"):
        load_dcae(folder)


def test_bfloat16_weights_give_close_float32_latents(snapshot, codec):
    half = build_codec(
        section(
            "codec", name="acestep", acestep_dir=str(snapshot), device="cpu", acestep={"dtype": "bfloat16"}
        )
    )
    assert half.vocoder.mel_transform.mel_scale.fb.dtype == torch.float32
    wav = stereo(0.5, seed=3)
    z, z_half = codec.encode(wav), half.encode(wav)
    assert z_half.dtype == torch.float32 and z_half.shape == z.shape
    assert torch.corrcoef(torch.stack([z.flatten(), z_half.flatten()]))[0, 1] > 0.99
    out = half.decode(z_half)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
