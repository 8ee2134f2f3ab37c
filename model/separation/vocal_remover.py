"""Vocal removal with demucs (Hybrid Transformer Demucs, ``htdemucs``): keep the sum of the non-vocal stems.

The model comes from demucs' own loader: ``demucs.pretrained.get_model(name, repo=weights_dir)`` for a local
repository (``<sig>[-<checksum>].th`` model files + ``<name>.yaml`` bag files, as demucs downloads them), or
demucs' own download when ``separate.weights_dir`` is empty and the network is reachable. Separation runs
``demucs.apply.apply_model`` (chunks of ``segment`` seconds, ``overlap``) on cross-faded windows of
``block_seconds`` read sequentially from the file, so a long track never sits in memory whole. As demucs' CLI does,
the mix is normalised by the whole track's mean/std before the model and restored after.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from model.audio.stream import AudioScan, crossfade_windows, iter_decoded, scan_audio
from model.runtime.atomic_io import atomic_path
from model.runtime.devices import resolve_device
from model.runtime.errors import InputError

log = logging.getLogger(__name__)

VOCALS = "vocals"
DEMUCS_URL_ROOT = "https://dl.fbaipublicfiles.com/demucs/"


class SeparationWeightsError(InputError, RuntimeError):
    """The demucs weights could not be found or loaded."""


@dataclass(frozen=True)
class SeparationConfig:
    """The ``separate:`` section of params.yaml (meaning of each key: docs/stages/separate.md)."""

    model: str
    weights_dir: str
    segment: float
    overlap: float
    shifts: int
    block_seconds: float
    device: str
    workers: int
    audio_format: str
    out_dir: str

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError(
                "params.yaml: separate.model must be 'none' or a demucs model name such as 'htdemucs'"
            )
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"params.yaml: separate.overlap = {self.overlap!r} must be in [0, 1)")
        if not self.segment > 0:
            raise ValueError(f"params.yaml: separate.segment = {self.segment!r} must be > 0 seconds")
        if self.block_seconds < 2 * self.segment + 1:
            raise ValueError(
                f"params.yaml: separate.block_seconds = {self.block_seconds!r} must be at least "
                f"2 * separate.segment + 1 = {2 * self.segment + 1} seconds"
            )
        if self.audio_format not in ("flac", "wav"):
            raise ValueError(f"params.yaml: separate.audio_format = {self.audio_format!r}; use flac or wav")
        if self.workers < 0 or self.shifts < 0:
            raise ValueError("params.yaml: separate.workers and separate.shifts must be >= 0")

    @property
    def passthrough(self) -> bool:
        return self.model == "none"


def weights_howto(name: str, weights_dir: str | os.PathLike) -> str:
    """Which files demucs' local repository needs for ``name``, and where demucs downloads them from."""
    from demucs.pretrained import REMOTE_ROOT, _parse_remote_files

    bag_file = Path(REMOTE_ROOT) / f"{name}.yaml"
    urls: list[str] = []
    if bag_file.exists():
        import yaml

        sigs = yaml.safe_load(bag_file.read_text()).get("models", [])
        remote = _parse_remote_files(Path(REMOTE_ROOT) / "files.txt")
        urls = [remote[s] for s in sigs if s in remote]
    files = ", ".join(urls) if urls else f"the .th file(s) of '{name}' listed in demucs/remote/files.txt"
    return (
        f"put demucs' local-repo files for '{name}' into separate.weights_dir ({weights_dir}): the model "
        f"file(s) {files} (keep their names) and the bag file {name}.yaml (copy demucs/remote/{name}.yaml from "
        f"the demucs package), e.g. on any online machine `curl -O <url>` for each model file"
    )


def load_demucs_model(name: str, weights_dir: str | os.PathLike | None) -> torch.nn.Module:
    """Load ``name`` through ``demucs.pretrained.get_model``: from the local repo ``weights_dir`` when set,
    else by demucs' own download. Raises SeparationWeightsError with instructions when that fails."""
    from demucs.pretrained import ModelLoadingError, get_model

    if weights_dir:
        repo = Path(weights_dir)
        if not repo.is_dir() or not any(repo.iterdir()):
            raise SeparationWeightsError(
                f"separate.weights_dir = '{repo}' is missing or empty; " + weights_howto(name, repo)
            )
        try:
            model = get_model(name, repo=repo)
        except ModelLoadingError as exc:
            raise SeparationWeightsError(
                f"{repo}: demucs could not load '{name}' ({exc}); " + weights_howto(name, repo)
            ) from exc
    else:
        try:
            model = get_model(name)
        except Exception as exc:  # any network or hub failure
            raise SeparationWeightsError(
                f"separate.weights_dir is empty and demucs could not download '{name}' "
                f"({type(exc).__name__}: {exc}); " + weights_howto(name, "<dir>")
            ) from exc
    if VOCALS not in model.sources:
        raise SeparationWeightsError(
            f"demucs model '{name}' has stems {model.sources}, none named '{VOCALS}'"
        )
    return model.eval()


def max_segment(model: torch.nn.Module) -> float:
    """The longest chunk the model accepts (HTDemucs is trained on a fixed length)."""
    from demucs.apply import BagOfModels
    from demucs.htdemucs import HTDemucs

    if isinstance(model, BagOfModels):
        return float(model.max_allowed_segment)
    if isinstance(model, HTDemucs):
        return float(model.segment)
    return float("inf")


class VocalRemover:
    """Instrumental = sum of every demucs stem except ``vocals``, at the model's sample rate and channels."""

    def __init__(self, model: torch.nn.Module, cfg: SeparationConfig, device: torch.device | None = None):
        self.model = model.eval()
        self.cfg = cfg
        self.device = device or resolve_device(cfg.device, "separate.device")
        self.model.to(self.device)
        self.sample_rate = int(model.samplerate)
        self.channels = int(model.audio_channels)
        self.sources = list(model.sources)
        self.keep = [i for i, s in enumerate(self.sources) if s != VOCALS]
        limit = max_segment(model)
        self.segment = min(float(cfg.segment), limit)
        if self.segment < cfg.segment:
            log.info(
                "separate.segment %.2f s exceeds the model's %.2f s; using %.2f s", cfg.segment, limit, limit
            )

    @classmethod
    def from_config(cls, cfg: SeparationConfig, device: torch.device | None = None) -> VocalRemover:
        return cls(load_demucs_model(cfg.model, cfg.weights_dir), cfg, device)

    def stems(self, mix: np.ndarray) -> np.ndarray:
        """mix (C, N) at ``sample_rate`` -> all stems (S, C, N) via ``demucs.apply.apply_model``."""
        from demucs.apply import apply_model

        x = torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32))[None]
        with torch.no_grad():
            out = apply_model(
                self.model,
                x,
                shifts=self.cfg.shifts,
                split=True,
                overlap=self.cfg.overlap,
                segment=self.segment,
                device=self.device,
                progress=False,
            )
        return out[0].cpu().numpy()

    def instrumental(self, mix: np.ndarray, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
        """mix (C, N) -> the non-vocal stems summed (C, N); ``mean``/``std`` are the track's normalisation."""
        scale = std + 1e-8
        stems = self.stems((mix - mean) / scale)
        return stems[self.keep].sum(axis=0) * scale + mean

    def separate_file(self, in_path: str | os.PathLike, out_path: str | os.PathLike) -> float:
        """Write the instrumental of ``in_path`` to ``out_path`` (atomically); returns its seconds.

        Raises AudioDecodeError (from the validating first pass) for corrupt, truncated or empty input.
        """
        scan: AudioScan = scan_audio(in_path)
        window = int(round(self.cfg.block_seconds * self.sample_rate))
        fade = int(round(self.segment * self.sample_rate))
        subtype = "PCM_24" if Path(out_path).suffix == ".flac" else "PCM_16"
        written = 0
        with atomic_path(out_path) as tmp:
            with sf.SoundFile(
                str(tmp), "w", samplerate=self.sample_rate, channels=self.channels, subtype=subtype
            ) as fh:
                chunks = iter_decoded(in_path, self.sample_rate, self.channels)
                for out in crossfade_windows(
                    chunks, lambda m: self.instrumental(m, scan.mean, scan.std), window, fade
                ):
                    fh.write(np.clip(out.T, -1.0, 1.0))
                    written += out.shape[1]
        return written / self.sample_rate
