"""The audio sections of `make gpu-check` (bench/gpu_check.py): ACE-Step DCAE encode and htdemucs separation
throughput, in x real time, with random weights of the real configurations (see each function).

They need the project's environment (diffusers, demucs, numpy, flowjam's codec and separation code): on a bare
GPU machine's Python they are skipped, with the reason, and the other sections still run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dcae_config(acestep_dir: str | None, dry_run: bool) -> tuple[dict[str, Any], str]:
    if dry_run:
        return (
            {
                "in_channels": 2,
                "latent_channels": 8,
                "attention_head_dim": 8,
                "encoder_block_types": ["ResBlock", "EfficientViTBlock"],
                "decoder_block_types": ["ResBlock", "EfficientViTBlock"],
                "encoder_block_out_channels": [8, 16],
                "decoder_block_out_channels": [8, 16],
                "encoder_layers_per_block": [1, 1],
                "decoder_layers_per_block": [1, 1],
                "encoder_qkv_multiscales": [[], [5]],
                "decoder_qkv_multiscales": [[], [5]],
                "downsample_block_type": "Conv",
                "upsample_block_type": "interpolate",
            },
            "tiny (dry run)",
        )
    if acestep_dir:
        path = Path(acestep_dir) / "music_dcae_f8c8" / "config.json"
        raw = json.loads(path.read_text())
        return {k: v for k, v in raw.items() if not k.startswith("_")}, str(path)
    # the shape of ACE-Step's f8c8 DCAE (2 mel channels in, 8 latent channels, 8x down): pass --acestep-dir
    return (
        {
            "in_channels": 2,
            "latent_channels": 8,
            "attention_head_dim": 32,
            "encoder_block_types": ["ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"],
            "decoder_block_types": ["ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"],
            "encoder_block_out_channels": [128, 256, 512, 1024],
            "decoder_block_out_channels": [128, 256, 512, 1024],
            "encoder_layers_per_block": [2, 2, 3, 3],
            "decoder_layers_per_block": [3, 3, 3, 3],
            "encoder_qkv_multiscales": [[], [], [5], [5]],
            "decoder_qkv_multiscales": [[], [], [5], [5]],
            "downsample_block_type": "Conv",
            "upsample_block_type": "interpolate",
        },
        "stand-in f8c8 config (no --acestep-dir)",
    )


def check_dcae(
    dry_run: bool, device: torch.device, sizes: Any, acestep_dir: str | None = None, **_: Any
) -> dict[str, Any]:
    try:
        from diffusers import AutoencoderDC

        from model.codec.acestep_mel import LogMelSpectrogram
    except ImportError as error:
        return {"skipped": f"needs the project's environment ({error})"}

    config, source = _dcae_config(acestep_dir, dry_run)
    torch.manual_seed(0)
    dcae = AutoencoderDC(**config).to(device).eval()
    mel = LogMelSpectrogram(
        sample_rate=44100, n_fft=2048, win_length=2048, hop_length=512, n_mels=128, f_min=40.0, f_max=16000.0
    ).to(device)
    n = int(sizes.audio_seconds * 44100) // 4096 * 4096
    wav = torch.randn(1, 2, n, device=device) * 0.1
    with torch.no_grad():
        dcae.encoder(mel(wav[:, :, : 4096 * 8]))  # warm-up
        _sync(device)
        start = time.perf_counter()
        latents = dcae.encoder(mel(wav))
        _sync(device)
    seconds = time.perf_counter() - start
    return {
        "x_real_time": sizes.audio_seconds / seconds,
        "audio_s": sizes.audio_seconds,
        "latent_shape": list(latents.shape),
        "config": source,
    }


def check_demucs(
    dry_run: bool, device: torch.device, sizes: Any, separate_weights_dir: str | None = None, **_: Any
) -> dict[str, Any]:
    try:
        import numpy as np
        from demucs.htdemucs import HTDemucs

        from model.separation.vocal_remover import SeparationConfig, VocalRemover, load_demucs_model
    except ImportError as error:
        return {"skipped": f"needs the project's environment ({error})"}

    torch.manual_seed(0)
    if separate_weights_dir:
        model, source = load_demucs_model("htdemucs", separate_weights_dir), "htdemucs weights"
    elif dry_run:
        model, source = (
            HTDemucs(
                sources=["drums", "bass", "other", "vocals"], segment=4, channels=8, t_layers=1, t_heads=2
            ),
            "tiny (dry run)",
        )
    else:
        model, source = (
            HTDemucs(sources=["drums", "bass", "other", "vocals"], segment=7.8),
            "HTDemucs defaults",
        )
    # the separate stage's settings for htdemucs (its segment capped at the model's training length)
    cfg = SeparationConfig(
        model="htdemucs",
        weights_dir="",
        segment=min(7.8, float(model.segment)),
        overlap=0.25,
        shifts=0,
        block_seconds=60.0,
        device="auto",
        workers=0,
        audio_format="flac",
        out_dir="",
    )
    remover = VocalRemover(model.eval(), cfg, device)
    mix = (np.random.default_rng(0).standard_normal((2, int(sizes.audio_seconds * 44100))) * 0.1).astype(
        np.float32
    )
    _sync(device)
    start = time.perf_counter()
    remover.stems(mix)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"x_real_time": sizes.audio_seconds / seconds, "audio_s": sizes.audio_seconds, "model": source}
