"""The codec interface: waveforms <-> latent sequences, shared by every stage that touches audio latents."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch


class Codec(ABC):
    """A waveform codec with a fixed latent frame rate.

    Attributes every implementation sets:
      ``name`` (str, the ``codec.name`` it is built from), ``sample_rate`` (Hz of the waveforms it takes and
      returns), ``channels`` (1 mono, 2 stereo), ``frame_rate`` (latent frames per second), ``latent_dim`` (D).
    """

    name: str
    sample_rate: int
    channels: int
    frame_rate: float
    latent_dim: int
    # frames per decode window and frames shared by neighbours (``model/codec/windowed.py``); None = one call
    decode_window: int | None = None
    decode_overlap: int = 0

    @abstractmethod
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: (B, C, N) float32 at ``sample_rate`` -> latents (B, D, T) float32, T = ``num_frames(N)``."""

    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, D, T) -> wav (B, channels, N) float32 at ``sample_rate``."""

    @abstractmethod
    def num_frames(self, n_samples: int) -> int:
        """Latent frames T that ``encode`` yields for N = ``n_samples`` input samples."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """JSON-ready description (name, rates, dims, every setting that changes the latents)."""

    def check_wav(self, wav: torch.Tensor) -> torch.Tensor:
        """Validate an encode input (B, C, N) and map its channels to ``channels`` (mono mix / duplicate)."""
        if not isinstance(wav, torch.Tensor):
            raise TypeError(
                f"{self.name} codec: encode takes a torch.Tensor (B, C, N), got {type(wav).__name__}"
            )
        if wav.ndim != 3:
            raise ValueError(
                f"{self.name} codec: encode takes wav of shape (B, C, N), got {tuple(wav.shape)}"
            )
        if wav.shape[-1] == 0:
            raise ValueError(f"{self.name} codec: encode got an empty waveform (N = 0)")
        c = wav.shape[1]
        if c == self.channels:
            return wav.float()
        if self.channels == 1:
            return wav.float().mean(dim=1, keepdim=True)
        if c == 1:
            return wav.float().expand(-1, self.channels, -1)
        raise ValueError(f"{self.name} codec: cannot map {c} input channels to {self.channels}")

    def check_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Validate a decode input (B, D, T) against ``latent_dim``."""
        if not isinstance(z, torch.Tensor) or z.ndim != 3 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(
                f"{self.name} codec: decode takes latents (B, {self.latent_dim}, T), got {shape}"
            )
        if z.shape[-1] == 0:
            raise ValueError(f"{self.name} codec: decode got zero latent frames (T = 0)")
        return z.float()
