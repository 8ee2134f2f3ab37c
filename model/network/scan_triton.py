"""The Triton selective-scan backend: forward and backward kernels of our own, JIT-compiled, no C++ build.

Same arguments, layouts and dtype contract as mamba_ssm's ``selective_scan_fn`` and
``model.network.scan.selective_scan``: u, delta, z (B, D, L); A (D, N); B, C (B, N, L) (input-dependent);
D, delta_bias (D,); out = (sum_n C h + D u) * silu(z) with h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t and
delta = softplus(delta + delta_bias) when asked. Inputs may be fp32, bf16 or fp16, each in its own dtype; the
state and every accumulation are fp32; the output is in u's dtype and each gradient in its input's dtype.

Algorithm (kernels in ``scan_triton_kernels``): one program per (batch row, block of BLOCK_D channels) walks the
sequence step by step with its (BLOCK_D, N) state in registers. The forward stores the state at every chunk
start, (B, D, ceil(L / chunk), N) fp32, about 4 N / chunk bytes per element of u, instead of every state. The
backward walks the chunks last to first: it recomputes the chunk's states from the saved one into a per-program
scratch (chunk, BLOCK_D, N), then runs the adjoint g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1} backwards
through them. dA, dD and ddelta_bias come out per batch row and dB, dC per channel block, in fp32 buffers that
torch sums afterwards: no atomics, so gradients are bit-for-bit reproducible run to run.

triton is imported only when a scan runs (``pip install '.[gpu]'``; it ships with CUDA builds of torch). On a
CPU the kernels run in Triton's interpreter when ``TRITON_INTERPRET=1`` is set before the process imports
triton (tests/conftest.py does this); it is slow and meant for tests only.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

import torch
from torch.autograd.function import once_differentiable

from model.network.scan_probe import ProbeResult, cached_probe, check_scan_call

INSTALL_HINT = (
    "install triton (`pip install '.[gpu]'`; CUDA builds of torch already ship it), or set model.scan_backend "
    "to `torch`"
)
DEFAULT_CHUNK_SIZE = 32  # steps between saved states: saved memory ~ 4 N / 32 bytes per element of u
TILE_ELEMENTS = 512  # BLOCK_D * BLOCK_N: 4 fp32 state values per thread with 4 warps
MAX_D_STATE = 256
INPUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_TRUTHY = ("1", "true", "on", "yes")
_probe_results: dict[str, ProbeResult] = {}


class TritonScanUnavailableError(ImportError):
    """scan_backend 'triton' was requested but triton does not import here."""


def interpreter_requested() -> bool:
    """Whether ``TRITON_INTERPRET`` is set (as triton reads it): the kernels then run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in _TRUTHY


@functools.cache
def _import_kernels() -> tuple[ModuleType | None, str]:
    try:
        from model.network import scan_triton_kernels
    except (ImportError, OSError, RuntimeError) as error:  # not installed, or a broken install
        return None, f"{type(error).__name__}: {error}"
    return scan_triton_kernels, ""


def require_triton_scan() -> ModuleType:
    """The kernel module, or TritonScanUnavailableError saying what to install."""
    kernels, reason = _import_kernels()
    if kernels is None:
        raise TritonScanUnavailableError(
            f"scan_backend='triton' needs triton, but importing it failed ({reason}); {INSTALL_HINT}"
        )
    return kernels


def probe_triton_scan(device: torch.device | str) -> ProbeResult:
    """(usable, reason): whether triton imports AND a tiny real call of our kernels on ``device`` (JIT compile,
    forward, backward) matches the torch scan. Once per device per process, whatever the caller's grad mode and
    autocast state; never raises."""
    kernels, reason = _import_kernels()
    if kernels is None:
        return False, f"triton does not import ({reason})"

    def attempt(dev: torch.device) -> str:
        check_scan_call(selective_scan_triton, dev)
        return f"a test call of the Triton selective scan on {dev} matched the torch scan"

    return cached_probe(_probe_results, device, "the Triton selective scan", attempt)


def _interpreted(jit_function: object) -> bool:
    return type(jit_function).__name__ == "InterpretedFunction"


def _kernels_for(device: torch.device) -> ModuleType:
    kernels = require_triton_scan()
    interpreted = _interpreted(kernels.selective_scan_fwd_kernel)
    # triton's own jit functions (tl.zeros) take their mode when triton is imported, ours when the kernels are
    if interpreted != _interpreted(kernels.tl.zeros):
        raise RuntimeError(
            "TRITON_INTERPRET changed between the import of triton and the first Triton scan; set it in the "
            "environment before the process imports triton (tests/conftest.py does this for the tests)"
        )
    if device.type != "cuda" and not interpreted:
        raise ValueError(
            f"the Triton selective scan got tensors on {device}; it runs on CUDA devices, or on CPU in Triton's "
            "interpreter when TRITON_INTERPRET=1 is set before the process imports triton; "
            "otherwise set model.scan_backend to `torch`"
        )
    return kernels


def _next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _check_inputs(u, delta, A, B, C, D, z, delta_bias, chunk_size: int, block_d: int | None) -> None:
    if u.dim() != 3:
        raise ValueError(f"triton selective scan: u must be (batch, channels, length), got {tuple(u.shape)}")
    batch, channels, length = u.shape
    if length < 1:
        raise ValueError("triton selective scan: the sequence length must be at least 1")
    if A.dim() != 2 or A.shape[0] != channels:
        raise ValueError(
            f"triton selective scan: A must be (channels={channels}, d_state), got {tuple(A.shape)}"
        )
    n_state = A.shape[1]
    if not 1 <= n_state <= MAX_D_STATE:
        raise ValueError(f"triton selective scan: d_state must be in 1..{MAX_D_STATE}, got {n_state}")
    expected = {
        "delta": (u.shape, delta),
        "B": ((batch, n_state, length), B),
        "C": ((batch, n_state, length), C),
    }
    expected |= {"z": (u.shape, z), "D": ((channels,), D), "delta_bias": ((channels,), delta_bias)}
    for name, (shape, tensor) in expected.items():
        if tensor is None:
            continue
        if tuple(tensor.shape) != tuple(shape):
            raise ValueError(
                f"triton selective scan: {name} must have shape {tuple(shape)} (mamba_ssm layout), "
                f"got {tuple(tensor.shape)}"
            )
    for name, tensor in {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z}.items():
        if tensor is not None and tensor.dtype not in INPUT_DTYPES:
            raise ValueError(
                f"triton selective scan: {name} is {tensor.dtype}; the kernels take fp32, bf16 or fp16 and "
                "compute in fp32 (use model.scan_backend `torch` for float64)"
            )
    if delta_bias is not None and delta_bias.dtype not in INPUT_DTYPES:
        raise ValueError(f"triton selective scan: delta_bias is {delta_bias.dtype}; use fp32, bf16 or fp16")
    if chunk_size < 1:
        raise ValueError(f"triton selective scan: chunk_size must be >= 1, got {chunk_size}")
    if block_d is not None and (block_d < 1 or block_d & (block_d - 1)):
        raise ValueError(f"triton selective scan: block_d must be a power of 2, got {block_d}")


class _TritonScan(torch.autograd.Function):
    """forward(u, delta, A, B, C, D, z, delta_bias, softplus, chunk, block_d, save) -> out (B, D, L), u's dtype."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size, block_d, save_states):
        kernels = _kernels_for(u.device)
        batch, channels, length = u.shape
        n_state = A.shape[1]
        chunk = min(chunk_size, length)
        n_chunks = -(-length // chunk)
        grid = (batch, -(-channels // block_d))
        out = torch.empty_like(u)
        states = u.new_empty(batch, channels, n_chunks, n_state, dtype=torch.float32) if save_states else out
        kernels.selective_scan_fwd_kernel[grid](
            u,
            delta,
            A,
            B,
            C,
            u if D is None else D,
            u if z is None else z,
            u if delta_bias is None else delta_bias,
            out,
            states,
            channels,
            length,
            n_state,
            n_chunks,
            chunk,
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(delta_softplus),
            SAVE_STATES=save_states,
            BLOCK_D=block_d,
            BLOCK_N=_next_power_of_2(n_state),
            num_warps=4,
        )
        if save_states:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
        ctx.settings = (bool(delta_softplus), chunk, n_chunks, block_d)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        delta_softplus, chunk, n_chunks, block_d = ctx.settings
        kernels = _kernels_for(u.device)
        batch, channels, length = u.shape
        n_state = A.shape[1]
        block_n = _next_power_of_2(n_state)
        n_blocks = -(-channels // block_d)
        f32 = {"dtype": torch.float32, "device": u.device}
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dz = None if z is None else torch.empty_like(z)
        dA = torch.empty(batch, channels, n_state, **f32)
        dB, dC = torch.empty(2, n_blocks, batch, n_state, length, **f32).unbind(0)
        dD = None if D is None else torch.empty(batch, channels, **f32)
        dbias = None if delta_bias is None else torch.empty(batch, channels, **f32)
        scratch = torch.empty(batch * n_blocks * chunk * block_d * block_n, **f32)
        kernels.selective_scan_bwd_kernel[(batch, n_blocks)](
            u,
            delta,
            A,
            B,
            C,
            u if D is None else D,
            u if z is None else z,
            u if delta_bias is None else delta_bias,
            dout.contiguous(),
            states,
            scratch,
            du,
            ddelta,
            du if dz is None else dz,
            dA,
            dB,
            dC,
            dA if dD is None else dD,
            dA if dbias is None else dbias,
            batch,
            channels,
            length,
            n_state,
            n_chunks,
            chunk,
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=delta_softplus,
            BLOCK_D=block_d,
            BLOCK_N=block_n,
            num_warps=4,
        )
        # partial sums reduced by torch in a fixed order: deterministic, unlike atomic adds
        return (
            du,
            ddelta,
            dA.sum(0).to(A.dtype),
            dB.sum(0).to(B.dtype),
            dC.sum(0).to(C.dtype),
            None if dD is None else dD.sum(0).to(D.dtype),
            dz,
            None if dbias is None else dbias.sum(0).to(delta_bias.dtype),
            None,
            None,
            None,
            None,
        )


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    block_d: int | None = None,
) -> torch.Tensor:
    """Selective scan with the Triton kernels: u, delta, z (B, D, L); A (D, N); B, C (B, N, L); D, delta_bias
    (D,) -> (B, D, L) in u's dtype, differentiable in every tensor argument.

    ``chunk_size`` is the number of steps between saved states (memory for the backward vs the per-program
    scratch of ``chunk_size`` states); ``block_d`` the channels per program (a power of 2; default keeps
    BLOCK_D * next_pow2(N) at ``TILE_ELEMENTS``). Non-contiguous inputs are copied to contiguous ones here.
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias, chunk_size, block_d)
    if block_d is None:
        block_d = min(_next_power_of_2(u.shape[1]), max(1, TILE_ELEMENTS // _next_power_of_2(A.shape[1])))
    tensors = [None if t is None else t.contiguous() for t in (u, delta, A, B, C, D, z, delta_bias)]
    # ctx.needs_input_grad stays True under no_grad: decide here, so inference saves no states
    save_states = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return _TritonScan.apply(*tensors, delta_softplus, chunk_size, block_d, save_states)
