"""ACE-Step's music vocoder (ADaMoSHiFiGANV1: ConvNeXt backbone + HiFi-GAN head), our implementation.

Parameter and buffer names and shapes follow the ``music_vocoder`` checkpoint of ACE-Step/ACE-Step-v1-3.5B, so
its weights load with ``strict=True``:
``backbone.channel_layers.{0: [conv, norm], i: [norm, conv]}``, ``backbone.stages.{i}.{j}.{dwconv, norm, pwconv1,
pwconv2, gamma}``, ``backbone.norm``, ``head.conv_pre``, ``head.ups.{i}``, ``head.resblocks.{k}.convs{1,2}.{m}``,
``head.conv_post`` (weight-normed: ``weight_g``, ``weight_v``, ``bias``) and ``mel_transform.spectrogram.window``,
``mel_transform.mel_scale.fb``. The forward pass is ACE-Step's ``decode``: log-mel (B, n_mels, W) -> wav
(B, 1, W · hop_length) in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.codec.acestep_mel import LogMelSpectrogram


@dataclass(frozen=True)
class VocoderConfig:
    """The keys of ``music_vocoder/config.json``; defaults are ACE-Step's."""

    input_channels: int = 128
    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (128, 256, 384, 512)
    drop_path_rate: float = 0.0
    kernel_sizes: tuple[int, ...] = (7,)
    upsample_rates: tuple[int, ...] = (4, 4, 2, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 4, 4, 4, 4, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11, 13)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5), (1, 3, 5))
    num_mels: int = 512
    upsample_initial_channel: int = 1024
    use_template: bool = False
    pre_conv_kernel_size: int = 13
    post_conv_kernel_size: int = 13
    sampling_rate: int = 44100
    n_fft: int = 2048
    win_length: int = 2048
    hop_length: int = 512
    f_min: float = 40
    f_max: float = 16000
    n_mels: int = 128

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> tuple[VocoderConfig, list[str]]:
        """Build from a config.json mapping; returns (config, ignored keys). Lists become tuples."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        ignored = []
        for key, value in raw.items():
            if key in known:
                values[key] = _as_tuple(value)
            elif not key.startswith("_"):
                ignored.append(key)
        cfg = cls(**values)
        cfg.validate(source)
        return cfg, ignored

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _as_list(getattr(self, f.name)) for f in fields(self)}

    def validate(self, source: str = "config") -> None:
        if len(self.depths) != len(self.dims):
            raise ValueError(f"{source}: depths {self.depths} and dims {self.dims} differ in length")
        if math.prod(self.upsample_rates) != self.hop_length:
            raise ValueError(
                f"{source}: prod(upsample_rates) = {math.prod(self.upsample_rates)} must equal "
                f"hop_length = {self.hop_length}"
            )
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError(f"{source}: upsample_rates and upsample_kernel_sizes differ in length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError(f"{source}: resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        if len(self.kernel_sizes) != 1:
            raise ValueError(
                f"{source}: kernel_sizes {self.kernel_sizes}: only one ConvNeXt kernel size is "
                "supported (ACE-Step's music_vocoder uses (7,))"
            )
        if self.use_template:
            raise ValueError(
                f"{source}: use_template = true needs an f0 template, which ACE-Step's decode never "
                "passes; the music_vocoder checkpoint uses false"
            )
        if self.num_mels != self.dims[-1]:
            raise ValueError(
                f"{source}: num_mels {self.num_mels} must equal the backbone's last dim {self.dims[-1]}"
            )


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def _as_list(value: Any) -> Any:
    return [_as_list(v) for v in value] if isinstance(value, list | tuple) else value


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class WeightNormConv1d(nn.Module):
    """Conv1d with weight normalisation stored as ``weight_g`` (out, 1, 1) and ``weight_v`` (out, in, k)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, padding: int = 0
    ):
        super().__init__()
        self.dilation, self.padding = dilation, padding
        v = torch.randn(out_channels, in_channels, kernel_size) * 0.01
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.norm(dim=(1, 2), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(1, 2), keepdim=True))
        return F.conv1d(x, weight, self.bias, padding=self.padding, dilation=self.dilation)


class WeightNormConvTranspose1d(nn.Module):
    """ConvTranspose1d with ``weight_g`` (in, 1, 1) and ``weight_v`` (in, out, k) (norm over dim 0, as torch)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.stride, self.padding = stride, padding
        v = torch.randn(in_channels, out_channels, kernel_size) * 0.01
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.norm(dim=(1, 2), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(1, 2), keepdim=True))
        return F.conv_transpose1d(x, weight, self.bias, stride=self.stride, padding=self.padding)


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over dim 1 of (B, C, L)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None] * x + self.bias[:, None]


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm (channels last) -> Linear -> GELU -> Linear -> layer scale, residual."""

    def __init__(
        self, dim: int, kernel_size: int = 7, mlp_ratio: float = 4.0, layer_scale_init: float = 1e-6
    ):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=(kernel_size - 1) // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, int(mlp_ratio * dim))
        self.pwconv2 = nn.Linear(int(mlp_ratio * dim), dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class ConvNeXtEncoder(nn.Module):
    """(B, input_channels, W) -> (B, dims[-1], W)."""

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        dims = cfg.dims
        stem = nn.Sequential(
            nn.Conv1d(cfg.input_channels, dims[0], 7, padding=3, padding_mode="replicate"),
            ChannelsFirstLayerNorm(dims[0]),
        )
        downs = [
            nn.Sequential(ChannelsFirstLayerNorm(dims[i]), nn.Conv1d(dims[i], dims[i + 1], 1))
            for i in range(len(dims) - 1)
        ]
        self.channel_layers = nn.ModuleList([stem, *downs])
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtBlock(dim, cfg.kernel_sizes[0]) for _ in range(depth)))
            for dim, depth in zip(dims, cfg.depths, strict=True)
        )
        self.norm = ChannelsFirstLayerNorm(dims[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for channel_layer, stage in zip(self.channel_layers, self.stages, strict=True):
            x = stage(channel_layer(x))
        return self.norm(x)


class ResBlock1(nn.Module):
    """HiFi-GAN residual block: three (dilated conv, conv) pairs with SiLU, each residual."""

    def __init__(self, channels: int, kernel_size: int, dilation: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel_size, d, get_padding(kernel_size, d))
            for d in dilation
        )
        self.convs2 = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel_size, 1, get_padding(kernel_size)) for _ in dilation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2, strict=True):
            x = x + conv2(F.silu(conv1(F.silu(x))))
        return x


class HiFiGANGenerator(nn.Module):
    """(B, num_mels, W) -> (B, 1, W · prod(upsample_rates)) in [-1, 1]."""

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        ch = cfg.upsample_initial_channel
        self.conv_pre = WeightNormConv1d(
            cfg.num_mels, ch, cfg.pre_conv_kernel_size, padding=get_padding(cfg.pre_conv_kernel_size)
        )
        self.num_kernels = len(cfg.resblock_kernel_sizes)
        ups, resblocks = [], []
        for i, (rate, kernel) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True)):
            c_in, c_out = ch // 2**i, ch // 2 ** (i + 1)
            ups.append(WeightNormConvTranspose1d(c_in, c_out, kernel, rate, (kernel - rate) // 2))
            resblocks.extend(
                ResBlock1(c_out, k, d)
                for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True)
            )
        self.ups = nn.ModuleList(ups)
        self.resblocks = nn.ModuleList(resblocks)
        last = ch // 2 ** len(cfg.upsample_rates)
        self.conv_post = WeightNormConv1d(
            last, 1, cfg.post_conv_kernel_size, padding=get_padding(cfg.post_conv_kernel_size)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.silu(x))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        return torch.tanh(self.conv_post(F.silu(x)))


class AceStepVocoder(nn.Module):
    """ACE-Step's music vocoder: log-mel (B, n_mels, W) -> wav (B, 1, W · hop_length) at ``sampling_rate``."""

    def __init__(self, cfg: VocoderConfig | None = None):
        super().__init__()
        self.cfg = cfg or VocoderConfig()
        self.cfg.validate()
        c = self.cfg
        self.backbone = ConvNeXtEncoder(c)
        self.head = HiFiGANGenerator(c)
        self.mel_transform = LogMelSpectrogram(
            c.sampling_rate, c.n_fft, c.win_length, c.hop_length, c.n_mels, c.f_min, c.f_max
        )
        self.eval()

    @torch.no_grad()
    def decode(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, n_mels, W) -> wav (B, 1, W · hop_length)."""
        return self.head(self.backbone(mel))

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (..., N) -> log-mel (..., n_mels, frames)."""
        return self.mel_transform(wav)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(mel))
