"""ACE-Step snapshot checks on tiny random models in a fake snapshot: weight names, f8c8 layout, mismatches."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderDC

from model.codec import build_codec
from model.codec.acestep_snapshot import (
    DCAE_SUBDIR,
    DCAE_WEIGHT_NAMES,
    VOCODER_SUBDIR,
    SnapshotError,
    load_dcae,
    require_snapshot,
    save_vocoder,
)
from model.codec.acestep_vocoder import AceStepVocoder, VocoderConfig
from tests.defaults import section
from tests.model.codec.test_acestep_codec import TINY_DCAE, TINY_VOCODER


def make_snapshot(root: Path, dcae: dict | None = None, vocoder: VocoderConfig = TINY_VOCODER) -> Path:
    torch.manual_seed(0)
    AutoencoderDC(**(dcae or TINY_DCAE)).save_pretrained(root / DCAE_SUBDIR)
    save_vocoder(AceStepVocoder(vocoder), root / VOCODER_SUBDIR)
    return root


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    return make_snapshot(tmp_path_factory.mktemp("ACE-Step-v1-3.5B"))


def copy_of(snapshot: Path, tmp_path: Path) -> Path:
    root = tmp_path / "snap"
    shutil.copytree(snapshot, root)
    return root


def test_dcae_weight_names_are_the_ones_diffusers_reads():
    from diffusers.utils import constants

    assert set(DCAE_WEIGHT_NAMES) == {
        constants.SAFETENSORS_WEIGHTS_NAME,
        constants.WEIGHTS_NAME,
        constants.SAFE_WEIGHTS_INDEX_NAME,
        constants.WEIGHTS_INDEX_NAME,
    }


def test_dcae_weights_under_a_name_diffusers_ignores_are_refused(snapshot, tmp_path):
    root = copy_of(snapshot, tmp_path)
    dcae = root / DCAE_SUBDIR
    (dcae / "diffusion_pytorch_model.safetensors").rename(dcae / "model.safetensors")
    with pytest.raises(SnapshotError, match="found config.json, model.safetensors") as err:
        require_snapshot(root)
    assert str(dcae) in str(err.value) and "diffusion_pytorch_model.safetensors" in str(err.value)
    # the vocoder's own loader does read model.safetensors
    (dcae / "model.safetensors").rename(dcae / "diffusion_pytorch_model.safetensors")
    voc = root / VOCODER_SUBDIR
    (voc / "diffusion_pytorch_model.safetensors").rename(voc / "model.safetensors")
    assert require_snapshot(root) == root


@pytest.mark.parametrize(
    ("change", "found"),
    [
        (
            {
                "encoder_block_out_channels": (8, 16, 32),
                "decoder_block_out_channels": (8, 16, 32),
                "encoder_block_types": ("ResBlock", "ResBlock", "EfficientViTBlock"),
                "decoder_block_types": ("ResBlock", "ResBlock", "EfficientViTBlock"),
                "encoder_layers_per_block": (1, 1, 1),
                "decoder_layers_per_block": (1, 1, 1),
                "encoder_qkv_multiscales": ((), (), (5,)),
                "decoder_qkv_multiscales": ((), (), (5,)),
            },
            "encoder_compression 4, decoder_compression 4",
        ),
        ({"latent_channels": 4}, "latent_channels 4"),
        ({"in_channels": 1}, "in_channels 1"),
    ],
)
def test_a_dcae_that_is_not_f8c8_is_refused_with_folder_and_values(tmp_path, change, found):
    root = make_snapshot(tmp_path / "snap", dcae={**TINY_DCAE, **change})
    with pytest.raises(ValueError, match=found) as err:
        build_codec(section("codec", name="acestep", acestep_dir=str(root), device="cpu"))
    assert str(root / DCAE_SUBDIR / "config.json") in str(err.value)


def test_dcae_size_mismatch_names_the_folder(snapshot, tmp_path):
    folder = copy_of(snapshot, tmp_path) / DCAE_SUBDIR
    config = json.loads((folder / "config.json").read_text())
    config["decoder_block_out_channels"] = [8, 16, 16, 64]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match="size mismatch") as err:
        load_dcae(folder)
    assert str(folder) in str(err.value)


def test_a_vocoder_with_another_mel_height_is_refused(tmp_path):
    vocoder = VocoderConfig(**{**TINY_VOCODER.__dict__, "n_mels": 64, "input_channels": 64})
    root = make_snapshot(tmp_path / "snap", vocoder=vocoder)
    with pytest.raises(ValueError, match="n_mels 64") as err:
        build_codec(section("codec", name="acestep", acestep_dir=str(root), device="cpu"))
    assert str(root / VOCODER_SUBDIR) in str(err.value)


def test_layout_is_read_from_the_loaded_config_and_lengths_round_up(snapshot):
    codec = build_codec(section("codec", name="acestep", acestep_dir=str(snapshot), device="cpu"))
    assert codec.time_compression == 8 and (codec.latent_channels, codec.latent_height) == (8, 16)
    assert codec.settings()["dcae"]["latent_channels"] == 8
    ten_seconds = 10 * 44100
    assert codec.num_frames(ten_seconds) == 108  # ACE-Step's latent_lengths would floor to 107 (9.94 s)
    assert codec.num_frames(108 * 4096) == 108 and codec.num_frames(108 * 4096 + 1) == 109
    assert codec.num_frames(ten_seconds) * 4096 >= ten_seconds
