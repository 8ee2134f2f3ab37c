"""Waveform codecs: the weight-free mel codec (offline default) and ACE-Step's music DCAE.

``build_codec(params["codec"])`` picks one by ``codec.name``; the ACE-Step codec is imported lazily so the mel
codec never pays for diffusers.
"""

from __future__ import annotations

from typing import Any

from model.codec.base import Codec

CODEC_NAMES = ("mel", "acestep")


def build_codec(codec_params: dict[str, Any], device: str | None = None) -> Codec:
    """Build the codec that ``codec.name`` names from the whole ``codec:`` section of params.yaml (as a dict: the
    section is also stored with a trained model, ``config.json``).

    ``device`` overrides ``codec.device`` (``auto``: CUDA when present, else CPU), e.g. ``"cuda:1"`` for one
    GPU per encode actor; ``None`` keeps the params value.
    """
    if not isinstance(codec_params, dict):
        raise TypeError(f"params.yaml: 'codec' must be a mapping, got {type(codec_params).__name__}")
    name = codec_params.get("name")
    device = device if device is not None else codec_params["device"]
    if name == "mel":
        from model.codec.mel import MelCodec, MelCodecConfig

        return MelCodec(MelCodecConfig(**codec_params["mel"]), device=device)
    if name == "acestep":
        from model.codec.acestep import AceStepCodec, AceStepCodecConfig

        return AceStepCodec(
            AceStepCodecConfig(
                acestep_dir=codec_params["acestep_dir"], dtype=codec_params["acestep"]["dtype"]
            ),
            device=device,
        )
    raise ValueError(f"params.yaml: codec.name is {name!r}; expected one of {', '.join(CODEC_NAMES)}")


__all__ = ["CODEC_NAMES", "Codec", "build_codec"]
