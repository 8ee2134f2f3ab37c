"""The Mamba (selective SSM) mixer, with mamba_ssm's parameter names, shapes and initialisation.

``Mamba`` mirrors ``mamba_ssm.modules.mamba_simple.Mamba`` (in_proj, conv1d, x_proj, dt_proj, A_log, D,
out_proj), so a state dict trained with the CUDA kernels loads here on CPU and back; mambapy's ``MambaBlock``
uses the same keys. The scan runs on one of these backends (``model.scan_backend``):

- ``torch``: our pure-PyTorch scan (``model.network.scan``), any device, any float dtype;
- ``cuda``: mamba_ssm's kernels (the optional ``cuda`` extra, built by ``make gpu-env``): its fused path
  ``mamba_inner_fn`` (conv + projections + scan in one autograd function, ``model.network.scan_fused``) when
  causal-conv1d imports, d_conv is 2-4, the torch autocast API it calls exists and a tiny real call passed,
  else ``selective_scan_fn`` alone (``model.network.scan_cuda``) inside our own conv and projections;
- ``triton``: our Triton kernels (``model.network.scan_triton``; triton, the ``gpu`` extra) on a CUDA device,
  or on CPU in Triton's interpreter when ``TRITON_INTERPRET=1`` is set (for tests);
- ``auto``: on a CUDA device, ``cuda``, else ``triton``, else ``torch``, each only after a tiny real call on
  that device passed (``scan_probe``: once per device per process, in the probe's own grad and autocast
  modes); off CUDA devices ``torch``.

An explicit ``cuda`` or ``triton`` never falls back: it raises with what to install. The choice
(:class:`ScanChoice`, :func:`scan_choice`) is logged once per process, at WARNING when a CUDA device runs
anything but mamba_ssm's fused path (the fastest flowjam has), and the train and generate stages record it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from model.network import scan_cuda, scan_fused, scan_triton
from model.network.scan import DEFAULT_CHUNK_SIZE, SCAN_METHODS, ScanMethod, selective_scan_time_major

logger = logging.getLogger(__name__)

ScanBackend = Literal["auto", "cuda", "torch", "triton"]
SCAN_BACKENDS: tuple[str, ...] = ("auto", "cuda", "torch", "triton")
Probe = Callable[[torch.device], tuple[bool, str]]
_logged_choices: set[tuple[str, str, str]] = set()


@dataclass(frozen=True)
class ScanChoice:
    """What runs a mixer's scan on one device: ``backend`` (cuda / triton / torch), whether mamba_ssm's fused
    path runs (``fused``), what was asked (``requested``) and why (``reason``)."""

    requested: str
    backend: str
    fused: bool
    reason: str

    @property
    def label(self) -> str:
        """``cuda-fused``, ``cuda``, ``triton`` or ``torch``: the name recorded in provenance and DVCLive."""
        return "cuda-fused" if self.fused else self.backend

    def as_dict(self) -> dict[str, str]:
        return {"requested": self.requested, "backend": self.label, "reason": self.reason}


def _default_probes() -> dict[str, Probe]:
    return {"cuda": scan_cuda.probe_cuda_scan, "triton": scan_triton.probe_triton_scan}


def choose_scan_backend(
    requested: str, device: torch.device, probes: Mapping[str, Probe] | None = None
) -> tuple[Literal["cuda", "torch", "triton"], str]:
    """(backend, reason) for ``model.scan_backend = requested`` on ``device``.

    ``torch`` -> torch. ``auto`` -> on a CUDA device the first of cuda, triton whose probe (default: one tiny
    real call, cached per device per process) passes, else torch; off CUDA devices torch. ``cuda`` -> cuda, or
    a ValueError off CUDA devices and a CudaScanUnavailableError (saying what to install) where the probe
    fails. ``triton`` -> triton where its probe passes, on a CUDA device or on any device with
    TRITON_INTERPRET=1; else a ValueError (device) or TritonScanUnavailableError (probe). Explicit backends
    never fall back.
    """
    probes = {**_default_probes(), **(probes or {})}
    if requested == "torch":
        return "torch", "model.scan_backend is torch"
    if requested == "triton":
        if device.type != "cuda" and not scan_triton.interpreter_requested():
            raise ValueError(
                f"scan_backend='triton' got input on {device}; move the model and inputs to a CUDA device, set "
                "TRITON_INTERPRET=1 to run the Triton kernels in its (slow) CPU interpreter, or set "
                "model.scan_backend to `torch` or `auto`"
            )
        usable, reason = probes["triton"](device)
        if not usable:
            raise scan_triton.TritonScanUnavailableError(
                f"scan_backend='triton' cannot run on {device}: {reason}; {scan_triton.INSTALL_HINT}"
            )
        return "triton", f"model.scan_backend is triton ({reason})"
    if device.type != "cuda":
        if requested == "cuda":
            raise ValueError(
                f"scan_backend='cuda' got input on {device}; move the model and inputs to a CUDA device, or set "
                "model.scan_backend to `torch` or `auto`"
            )
        return "torch", "input is not on a CUDA device"
    usable, cuda_reason = probes["cuda"](device)
    if usable:
        return "cuda", cuda_reason
    if requested == "cuda":
        raise scan_cuda.CudaScanUnavailableError(
            f"scan_backend='cuda' cannot run on {device}: {cuda_reason}; {scan_cuda.INSTALL_HINT}"
        )
    usable, triton_reason = probes["triton"](device)
    if usable:
        return "triton", f"mamba_ssm's kernel is not usable: {cuda_reason}; {scan_cuda.INSTALL_HINT}"
    return "torch", (
        f"mamba_ssm's kernel is not usable: {cuda_reason}; nor is the Triton scan: {triton_reason}; "
        f"{scan_cuda.INSTALL_HINT}"
    )


def _log_choice_once(choice: ScanChoice, device: torch.device) -> None:
    key = (choice.requested, choice.label, str(device))
    if key in _logged_choices:
        return
    _logged_choices.add(key)
    if device.type == "cuda" and not choice.fused:
        logger.warning(
            "model.scan_backend=%s: the %s selective scan runs on %s, not mamba_ssm's fused path (the fastest "
            "flowjam has): %s",
            choice.requested,
            choice.label,
            device,
            choice.reason,
        )
    else:
        logger.info(
            "model.scan_backend=%s: using the %s selective scan on %s (%s)",
            choice.requested,
            choice.label,
            device,
            choice.reason,
        )


def scan_choice(net: nn.Module, device: torch.device | str) -> ScanChoice | None:
    """The scan choice of ``net``'s Mamba mixers on ``device`` (they share one setting); None without mixers.
    Raises, like a forward would, when an explicit backend cannot run there."""
    choices = {m.resolve_scan(torch.device(device)) for m in net.modules() if isinstance(m, Mamba)}
    if len(choices) > 1:
        raise ValueError(f"the network's mixers disagree on the scan: {sorted(c.label for c in choices)}")
    return next(iter(choices), None)


class Mamba(nn.Module):
    """Selective-SSM mixer: ``forward(hidden_states (B, L, d_model)) -> (B, L, d_model)``.

    d_inner = expand * d_model; dt_rank = ceil(d_model / 16) when "auto". Parameters (mamba_ssm names):
    in_proj (2*d_inner, d_model), conv1d depthwise (d_inner, 1, d_conv), x_proj (dt_rank + 2*d_state, d_inner),
    dt_proj (d_inner, dt_rank) + bias, A_log (d_inner, d_state) fp32, D (d_inner,) fp32, out_proj (d_model, d_inner).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | Literal["auto"] = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: Literal["random", "constant"] = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        scan_backend: ScanBackend = "auto",
        scan_method: ScanMethod = "chunked",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        layer_idx: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if scan_backend not in SCAN_BACKENDS:
            raise ValueError(f"Mamba: scan_backend must be one of {SCAN_BACKENDS}, got {scan_backend!r}")
        if scan_method not in SCAN_METHODS:
            raise ValueError(f"Mamba: scan_method must be one of {SCAN_METHODS}, got {scan_method!r}")
        if dt_init not in ("random", "constant"):
            raise ValueError(f"Mamba: dt_init must be 'random' or 'constant', got {dt_init!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"Mamba: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if scan_backend == "cuda":
            scan_cuda.require_cuda_scan()  # fail at construction, with the install hint, not mid-training
        if scan_backend == "triton":
            scan_triton.require_triton_scan()
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend = scan_backend
        self.scan_method = scan_method
        self.chunk_size = chunk_size
        self.layer_idx = layer_idx

        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias, **factory)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
            **factory,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

        dt_init_std = self.dt_rank**-0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "constant":
                self.dt_proj.weight.fill_(dt_init_std)
            else:
                self.dt_proj.weight.uniform_(-dt_init_std, dt_init_std)
            # softplus(dt_proj.bias) is log-uniform in [dt_min, dt_max]: bias = inverse softplus of dt.
            dt = torch.exp(
                torch.rand(self.d_inner, device=device) * (math.log(dt_max) - math.log(dt_min))
                + math.log(dt_min)
            ).clamp(min=dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True

        # S4D-real initialisation, kept in fp32 whatever `dtype` is (as mamba_ssm does).
        a_init = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a_init))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, dtype=torch.float32, device=device))
        self.D._no_weight_decay = True

    def resolve_scan(self, device: torch.device) -> ScanChoice:
        """What runs the scan for inputs on ``device`` (logged once per process); raises if an explicit cuda or
        triton cannot run there. Cheap after the first call: the probes are cached per device."""
        backend, reason = choose_scan_backend(self.scan_backend, device)
        fused = False
        if backend == "cuda":
            problem = scan_fused.fused_problem(self.d_conv, device)
            fused = not problem
            reason = f"{reason}; fused path: {problem or 'mamba_inner_fn'}"
        choice = ScanChoice(self.scan_backend, backend, fused, reason)
        _log_choice_once(choice, device)
        return choice

    def resolve_backend(self, device: torch.device) -> Literal["cuda", "torch", "triton"]:
        """The backend that runs for inputs on ``device`` (see :meth:`resolve_scan`)."""
        return self.resolve_scan(device).backend  # type: ignore[return-value]

    def _fused_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """mamba_ssm's ``mamba_inner_fn`` on (B, L, d_model), called as upstream's ``Mamba`` calls it."""
        inner, _ = scan_fused._import_mamba_inner_fn()
        batch, length, _ = hidden_states.shape
        # in_proj straight into (2 * d_inner, B * L): xz is (B, 2 * d_inner, L) with stride 1 along L, no copy
        xz = self.in_proj.weight @ hidden_states.reshape(batch * length, -1).t()
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias.to(xz.dtype)[:, None]
        xz = xz.view(-1, batch, length).transpose(0, 1)
        return inner(
            xz,
            self.conv1d.weight,
            self.conv1d.bias,
            self.x_proj.weight,
            self.dt_proj.weight,
            self.out_proj.weight,
            self.out_proj.bias,
            -torch.exp(self.A_log.float()),
            None,  # input-dependent B
            None,  # input-dependent C
            self.D.float(),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )

    def _causal_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise causal conv1d on time-major x: (L, B, d_inner) -> (L, B, d_inner).

        out_t = bias + sum_k weight[:, 0, k] * x_{t - (d_conv - 1) + k}, zeros before the start: the same as
        ``conv1d(x)[..., :L]`` with padding d_conv - 1, without transposing to (B, d_inner, L) and back.
        """
        length = x.shape[0]
        padded = F.pad(x, (0, 0, 0, 0, self.d_conv - 1, 0))
        # In x's dtype, as an autocast nn.Conv1d would be: autocast does not cast addcmul, and fp32 weights
        # would otherwise promote u to fp32 under bf16 autocast while delta, B, C and z stay bf16.
        weight = self.conv1d.weight[:, 0, :].to(x.dtype)  # (d_inner, d_conv)
        last = self.d_conv - 1
        if self.conv1d.bias is not None:
            out = torch.addcmul(self.conv1d.bias.to(x.dtype), padded[last:], weight[:, last])
        else:
            out = padded[last:] * weight[:, last]
        for tap in range(last):
            out = torch.addcmul(out, padded[tap : tap + length], weight[:, tap])
        return out

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states: (B, L, d_model) -> (B, L, d_model); causal in L."""
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(
                f"Mamba: expected input (batch, length, d_model={self.d_model}), got {tuple(hidden_states.shape)}"
            )
        choice = self.resolve_scan(hidden_states.device)
        if choice.fused:
            return self._fused_forward(hidden_states)
        # Time-major (L, B, .) throughout: the scan walks L, and every per-step slice is contiguous.
        xz = self.in_proj(hidden_states.transpose(0, 1))  # (L, B, 2*d_inner)
        x, z = xz.chunk(2, dim=-1)
        x = F.silu(self._causal_conv(x))
        x_dbl = self.x_proj(x)  # (L, B, dt_rank + 2*d_state)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight)  # (L, B, d_inner); its bias is added inside the scan
        # A and D in fp32 exactly as mamba_ssm (and mambapy) compute them; the dt bias at least fp32.
        A = -torch.exp(self.A_log.float())
        delta_bias = self.dt_proj.bias.to(torch.promote_types(self.dt_proj.bias.dtype, torch.float32))
        if choice.backend != "torch":
            kernel = (
                scan_cuda.selective_scan_cuda
                if choice.backend == "cuda"
                else scan_triton.selective_scan_triton
            )
            # The kernels take mamba_ssm's layout: (L, B, C) -> (B, C, L), and back.
            u_k, delta_k, B_k, C_k, z_k = (t.permute(1, 2, 0) for t in (x, delta, B, C, z))
            y = kernel(u_k, delta_k, A, B_k, C_k, self.D.float(), z_k, delta_bias, True).permute(2, 0, 1)
        else:
            y = selective_scan_time_major(
                x, delta, A, B, C, self.D.float(), z, delta_bias, True, self.scan_method, self.chunk_size
            )
        return self.out_proj(y).transpose(0, 1)
