"""Loading ACE-Step v1's codec weights from a local snapshot of ACE-Step/ACE-Step-v1-3.5B.

Layout (as on the hub): ``<dir>/music_dcae_f8c8/{config.json, diffusion_pytorch_model.safetensors}`` (diffusers
``AutoencoderDC``) and ``<dir>/music_vocoder/{config.json, diffusion_pytorch_model.safetensors}`` (our
``AceStepVocoder``). Nothing is ever downloaded here.

Weights: the DCAE folder is read by diffusers, which looks only for ``diffusion_pytorch_model.safetensors`` /
``.bin`` (or their sharded ``.index.json``), so only those names count there; the vocoder is read by our own
loader, which also takes ``model.safetensors`` / ``pytorch_model.bin``. The DCAE must be ACE-Step's f8c8 layout
(:func:`check_dcae_layout`): the codec's frame rate and latent shape follow from it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from model.codec.acestep_vocoder import AceStepVocoder, VocoderConfig
from model.runtime.errors import InputError

log = logging.getLogger(__name__)

DCAE_SUBDIR = "music_dcae_f8c8"
VOCODER_SUBDIR = "music_vocoder"
# What diffusers' ModelMixin.from_pretrained reads (diffusers.utils.constants; a test checks they agree).
DCAE_WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin.index.json",
)
VOCODER_WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
)
# ACE-Step's music_dcae_f8c8: 8x down in mel height and time, 8 latent channels, a stereo mel image in.
F8C8_COMPRESSION, F8C8_LATENT_CHANNELS, F8C8_IN_CHANNELS = 8, 8, 2
# Deterministic front-end buffers: rebuilt from the config if a checkpoint predates persisting them.
REBUILDABLE_BUFFERS = {"mel_transform.spectrogram.window", "mel_transform.mel_scale.fb"}
DOWNLOAD_HINT = (
    "get the snapshot with: huggingface-cli download ACE-Step/ACE-Step-v1-3.5B "
    '--include "music_dcae_f8c8/*" "music_vocoder/*" --local-dir <dir>, then set codec.acestep_dir: <dir> '
    "in params.yaml"
)


class SnapshotError(InputError, FileNotFoundError):
    """The ACE-Step snapshot directory is unset, missing, or incomplete."""


def require_snapshot(acestep_dir: str | Path | None) -> Path:
    """Check ``codec.acestep_dir`` holds both subfolders with a config and weights; return it as a Path."""
    if not acestep_dir:
        raise SnapshotError(
            f"params.yaml: codec.acestep_dir is empty but codec.name is acestep; {DOWNLOAD_HINT}"
        )
    root = Path(acestep_dir).expanduser()
    if not root.is_dir():
        raise SnapshotError(
            f"params.yaml: codec.acestep_dir = {str(acestep_dir)!r} is not a directory; {DOWNLOAD_HINT}"
        )
    for sub, names in ((DCAE_SUBDIR, DCAE_WEIGHT_NAMES), (VOCODER_SUBDIR, VOCODER_WEIGHT_NAMES)):
        folder = root / sub
        if not (folder / "config.json").is_file():
            raise SnapshotError(f"codec.acestep_dir: {folder / 'config.json'} is missing; {DOWNLOAD_HINT}")
        weights_file(folder, names)
    return root


def weights_file(folder: Path, names: tuple[str, ...] = VOCODER_WEIGHT_NAMES) -> Path:
    """The first of ``names`` present in ``folder``; an error listing what is there otherwise."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    present = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    raise SnapshotError(
        f"codec.acestep_dir: no weights in {folder} that its loader reads (looked for "
        f"{', '.join(names)}; found {', '.join(present) or 'nothing'}); {DOWNLOAD_HINT}"
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_vocoder(folder: str | Path) -> AceStepVocoder:
    """Build ``AceStepVocoder`` from ``<folder>/config.json`` and load its weights with strict=True."""
    folder = Path(folder)
    config_path = folder / "config.json"
    raw = json.loads(config_path.read_text())
    cfg, ignored = VocoderConfig.from_dict(raw, source=str(config_path))
    if ignored:
        log.warning("%s: ignoring keys our vocoder does not use: %s", config_path, ", ".join(ignored))
    vocoder = AceStepVocoder(cfg)
    path = weights_file(folder, VOCODER_WEIGHT_NAMES)
    state = read_state_dict(path)
    absent = REBUILDABLE_BUFFERS - set(state)
    if absent:
        own = vocoder.state_dict()
        state = {**state, **{k: own[k] for k in absent}}
        log.info("%s: front-end buffers %s rebuilt from config", path, ", ".join(sorted(absent)))
    try:
        vocoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RuntimeError(
            f"{path}: weights do not match ACE-Step's music vocoder built from {config_path}: {exc}"
        ) from exc
    return vocoder.eval()


def save_vocoder(vocoder: AceStepVocoder, folder: str | Path) -> Path:
    """Write ``config.json`` + ``diffusion_pytorch_model.safetensors`` laid out like the hub snapshot."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "ADaMoSHiFiGANV1", **vocoder.cfg.to_dict()}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.detach().contiguous() for k, v in vocoder.state_dict().items()}
    save_file(state, str(folder / VOCODER_WEIGHT_NAMES[0]))
    return folder


def load_dcae(folder: str | Path, dtype: torch.dtype = torch.float32):
    """diffusers ``AutoencoderDC.from_pretrained`` on the local folder; any missing/unexpected key is an error."""
    from diffusers import AutoencoderDC

    folder = Path(folder)
    weights_file(folder, DCAE_WEIGHT_NAMES)
    try:
        # low_cpu_mem_usage off: the same loading path (and errors) whether or not accelerate is installed
        model, info = AutoencoderDC.from_pretrained(
            str(folder),
            torch_dtype=dtype,
            local_files_only=True,
            output_loading_info=True,
            low_cpu_mem_usage=False,
        )
    except (RuntimeError, ValueError) as exc:  # size mismatches between config.json and the weights
        raise RuntimeError(
            f"{folder}: AutoencoderDC weights do not match its config.json (size mismatch): {exc}"
        ) from exc
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise RuntimeError(f"{folder}: AutoencoderDC weights do not match its config.json: {problems}")
    check_dcae_layout(model.config, folder)
    return model.eval()


def dcae_layout(config: Any) -> dict[str, int]:
    """compression (2 ** (number of encoder / decoder blocks - 1), as diffusers builds it), channels in and out."""
    return {
        "encoder_compression": 2 ** (len(config["encoder_block_out_channels"]) - 1),
        "decoder_compression": 2 ** (len(config["decoder_block_out_channels"]) - 1),
        "latent_channels": int(config["latent_channels"]),
        "in_channels": int(config["in_channels"]),
    }


def check_dcae_layout(config: Any, folder: str | Path) -> int:
    """Refuse a DCAE that is not ACE-Step's f8c8 layout; returns its compression factor (8)."""
    found = dcae_layout(config)
    expected = {
        "encoder_compression": F8C8_COMPRESSION,
        "decoder_compression": F8C8_COMPRESSION,
        "latent_channels": F8C8_LATENT_CHANNELS,
        "in_channels": F8C8_IN_CHANNELS,
    }
    if found != expected:
        shown = ", ".join(f"{k} {v}" for k, v in found.items())
        raise ValueError(
            f"{Path(folder) / 'config.json'}: DCAE layout {shown}; ACE-Step's {DCAE_SUBDIR} (the "
            f"only layout this codec's frame rate and (8, 16, T) latents are defined for) has "
            + ", ".join(f"{k} {v}" for k, v in expected.items())
        )
    return found["encoder_compression"]
