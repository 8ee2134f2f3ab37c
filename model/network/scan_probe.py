"""One tiny real call of a selective-scan kernel on a device, checked against the torch scan, whatever the caller's
grad mode or autocast state; verdicts cached once per (kernel, device) per process.

Importing a kernel proves little: mamba_ssm imports without a built extension on newer releases, a build for
another GPU architecture fails only at launch, and a JIT compiler may be missing. So a backend is used only
after :func:`check_scan_call` ran one (1, 4, 8) scan with d_state 2 forward and backward on the device and the
output and the gradients of u, delta, A and B matched the torch scan on CPU.

The probe runs where generation runs (under ``torch.no_grad()`` or ``torch.inference_mode()``) and where a
training step runs (under bf16 autocast), so it sets its own modes: ``inference_mode(False)`` and
``enable_grad()`` for the backward it needs, and autocast off so that the comparison is fp32 against fp32.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import torch

from model.network.scan import selective_scan

logger = logging.getLogger(__name__)

PROBE_TOLERANCE = 1e-3  # fp32 kernel vs fp32 torch scan on a (1, 4, 8) problem; they agree to ~1e-6
ProbeResult = tuple[bool, str]


def probe_inputs() -> dict[str, torch.Tensor]:
    """The probe's (1, 4, 8) problem with d_state 2, seeded, on CPU in fp32 (A negative)."""
    gen = torch.Generator().manual_seed(0)
    shapes = {
        "u": (1, 4, 8),
        "delta": (1, 4, 8),
        "A": (4, 2),
        "B": (1, 2, 8),
        "C": (1, 2, 8),
        "D": (4,),
        "z": (1, 4, 8),
        "delta_bias": (4,),
    }
    inputs = {name: torch.randn(shape, generator=gen) for name, shape in shapes.items()}
    inputs["A"] = -inputs["A"].abs()
    return inputs


def _run(fn: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor], device: torch.device) -> list:
    leaves = {k: v.to(device).requires_grad_() for k, v in inputs.items()}
    out = fn(
        leaves["u"],
        leaves["delta"],
        leaves["A"],
        leaves["B"],
        leaves["C"],
        leaves["D"],
        z=leaves["z"],
        delta_bias=leaves["delta_bias"],
        delta_softplus=True,
    )
    out.square().sum().backward()
    return [out.detach().cpu()] + [leaves[k].grad.cpu() for k in ("u", "delta", "A", "B")]


def compare(got: list[torch.Tensor], want: list[torch.Tensor], what: str) -> None:
    """Raise RuntimeError unless every tensor of ``got`` is finite and within the tolerance of ``want``."""
    for g, w in zip(got, want, strict=True):
        if g.shape != w.shape or not torch.isfinite(g).all():
            raise RuntimeError(f"{what} returned shape {tuple(g.shape)} or non-finite values")
        error = float((g.float() - w.float()).abs().max())
        if error > PROBE_TOLERANCE * (1.0 + float(w.abs().max())):
            raise RuntimeError(f"{what} disagrees with the torch scan by {error:.3g}")


@contextlib.contextmanager
def isolated_modes(device: torch.device) -> Iterator[None]:
    """The modes a probe runs in: gradients on (also inside inference_mode), autocast off on ``device``."""
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        torch.autocast(device_type=device.type, enabled=False),
    ):
        yield


def check_scan_call(kernel: Callable[..., torch.Tensor], device: torch.device) -> None:
    """One scan with ``kernel`` on ``device``, forward and backward, against the torch scan; raises if off."""
    with isolated_modes(
        device
    ):  # inputs made here too: inside inference_mode they would be inference tensors
        got = _run(kernel, probe_inputs(), device)
    with isolated_modes(torch.device("cpu")):
        want = _run(selective_scan, probe_inputs(), torch.device("cpu"))
    compare(got, want, "the kernel")


def cached_probe(
    cache: dict[str, ProbeResult],
    device: torch.device | str,
    name: str,
    attempt: Callable[[torch.device], str],
) -> ProbeResult:
    """(usable, reason) of ``attempt(device)`` (which raises on failure and returns a success message), run once
    per device per ``cache``; logged once; never raises."""
    key = str(torch.device(device))
    if key in cache:
        return cache[key]
    try:
        result = (True, attempt(torch.device(device)))
    except Exception as error:  # a missing extension, no kernel image for this GPU, a wrong result
        result = (False, f"a test call of {name} on {key} failed ({type(error).__name__}: {error})")
    cache[key] = result
    logger.info("%s on %s: %s (%s)", name, key, "usable" if result[0] else "NOT usable", result[1])
    return result
