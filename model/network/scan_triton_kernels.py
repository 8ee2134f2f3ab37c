"""Triton kernels of the selective scan; the algorithm, the contract and the launch are in ``scan_triton``.

Importing this module imports triton, so only ``model.network.scan_triton`` imports it, inside a function, the
first time the Triton backend runs. ``@triton.jit`` reads ``TRITON_INTERPRET`` when a function is decorated
(triton's own, such as ``tl.zeros``, when triton is imported): to run these kernels in Triton's CPU
interpreter, set it before the process imports triton.

Layouts (all contiguous, sizes passed as arguments): u, delta, z, out, dout and their gradients (batch,
channels, length); B, C (batch, n_state, length); A (channels, n_state); D, delta_bias (channels,);
chunk-start states (batch, channels, n_chunks, n_state) fp32. One program owns one batch row and BLOCK_D
channels; its state tile (BLOCK_D, BLOCK_N) stays in registers, in fp32, for the whole sequence.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2_E: tl.constexpr = tl.constexpr(1.4426950408889634)


@triton.jit
def _softplus(x):
    # log1p(exp(x)) without overflow; log1p by Goldberg's correction (libdevice has no interpreter path)
    e = tl.exp(-tl.abs(x))
    w = 1.0 + e
    log1p_e = tl.where(w == 1.0, e, tl.log(w) * e / tl.where(w == 1.0, 1.0, w - 1.0))
    return tl.maximum(x, 0.0) + log1p_e


@triton.jit
def _step_delta(delta_ptr, offset, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(delta_t after bias and softplus, its pre-softplus value), both fp32 (BLOCK_D,)."""
    raw = tl.load(delta_ptr + offset, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias
    if SOFTPLUS:
        return _softplus(raw), raw
    return raw, raw


@triton.jit
def selective_scan_fwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    out_ptr,
    states_ptr,
    n_channels,
    length,
    n_state,
    n_chunks,
    chunk,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Grid (batch, cdiv(channels, BLOCK_D)): out = (C.h + D u) * silu(z); stores h at every chunk start."""
    pid_b = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_ok = d < n_channels
    n_ok = n < n_state
    dn_ok = d_ok[:, None] & n_ok[None, :]
    # padded states get A = 0 and B = C = 0: their decay is 1, their drive 0, so they stay 0 and read out 0
    A2 = tl.load(A_ptr + d[:, None] * n_state + n[None, :], mask=dn_ok, other=0.0).to(tl.float32) * LOG2_E
    bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
    if HAS_D:
        skip = tl.load(D_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
    row = (pid_b * n_channels + d) * length  # (BLOCK_D,) start of each channel's sequence
    bc_row = (pid_b * n_state + n) * length  # (BLOCK_N,)
    state_row = (pid_b * n_channels + d) * n_chunks  # (BLOCK_D,)
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(0, n_chunks):
        start = c * chunk
        if SAVE_STATES:
            tl.store(states_ptr + (state_row[:, None] + c) * n_state + n[None, :], h, mask=dn_ok)
        for t in range(start, tl.minimum(start + chunk, length)):
            dt, _ = _step_delta(delta_ptr, row + t, d_ok, bias, HAS_BIAS, SOFTPLUS)
            u_t = tl.load(u_ptr + row + t, mask=d_ok, other=0.0).to(tl.float32)
            B_t = tl.load(B_ptr + bc_row + t, mask=n_ok, other=0.0).to(tl.float32)
            C_t = tl.load(C_ptr + bc_row + t, mask=n_ok, other=0.0).to(tl.float32)
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u_t)[:, None] * B_t[None, :]
            y = tl.sum(h * C_t[None, :], axis=1)
            if HAS_D:
                y += skip * u_t
            if HAS_Z:
                z_t = tl.load(z_ptr + row + t, mask=d_ok, other=0.0).to(tl.float32)
                y = y * z_t * tl.sigmoid(z_t)
            tl.store(out_ptr + row + t, y.to(out_ptr.dtype.element_ty), mask=d_ok)


@triton.jit
def selective_scan_bwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    dout_ptr,
    states_ptr,
    scratch_ptr,
    du_ptr,
    ddelta_ptr,
    dz_ptr,
    dA_ptr,
    dB_ptr,
    dC_ptr,
    dD_ptr,
    dbias_ptr,
    batch,
    n_channels,
    length,
    n_state,
    n_chunks,
    chunk,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Grid (batch, cdiv(channels, BLOCK_D)): every gradient of the scan, chunks walked last to first.

    Per chunk: recompute h_t from the saved chunk-start state into this program's scratch (chunk, BLOCK_D,
    BLOCK_N) fp32, then walk it backwards with the adjoint g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}.
    du, ddelta, dz are written in their inputs' dtypes; dA (batch, channels, n_state), dD and ddelta_bias
    (batch, channels) are this batch row's sums; dB and dC (n_dblocks, batch, n_state, length) are this
    channel block's sums. The caller sums the partials in fp32, in a fixed order (no atomics).
    """
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_ok = d < n_channels
    n_ok = n < n_state
    dn_ok = d_ok[:, None] & n_ok[None, :]
    A = tl.load(A_ptr + d[:, None] * n_state + n[None, :], mask=dn_ok, other=0.0).to(tl.float32)
    A2 = A * LOG2_E
    bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
    skip = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_D:
        skip = tl.load(D_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
    row = (pid_b * n_channels + d) * length
    bc_row = (pid_b * n_state + n) * length
    state_row = (pid_b * n_channels + d) * n_chunks
    partial_row = ((pid_d * batch + pid_b) * n_state + n) * length  # dB/dC partials of this channel block
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + n[None, :]  # offsets inside one scratch slot
    scratch = scratch_ptr + (pid_b * tl.num_programs(1) + pid_d) * chunk * BLOCK_D * BLOCK_N
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # exp(delta_{t+1} A) g_{t+1}, from the step after
    for c_rev in range(0, n_chunks):
        start = (n_chunks - 1 - c_rev) * chunk
        end = tl.minimum(start + chunk, length)
        h0 = tl.load(
            states_ptr + (state_row[:, None] + start // chunk) * n_state + n[None, :], mask=dn_ok, other=0.0
        )
        # the previous chunk's backward walk must finish reading the scratch before it is overwritten
        tl.debug_barrier()
        h = h0
        for t in range(start, end):
            dt, _ = _step_delta(delta_ptr, row + t, d_ok, bias, HAS_BIAS, SOFTPLUS)
            u_t = tl.load(u_ptr + row + t, mask=d_ok, other=0.0).to(tl.float32)
            B_t = tl.load(B_ptr + bc_row + t, mask=n_ok, other=0.0).to(tl.float32)
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u_t)[:, None] * B_t[None, :]
            tl.store(scratch + (t - start) * BLOCK_D * BLOCK_N + tile, h)
        tl.debug_barrier()  # the recomputed states must be visible to every thread before the walk back
        for i in range(0, end - start):
            t = end - 1 - i
            dt, dt_raw = _step_delta(delta_ptr, row + t, d_ok, bias, HAS_BIAS, SOFTPLUS)
            u_t = tl.load(u_ptr + row + t, mask=d_ok, other=0.0).to(tl.float32)
            B_t = tl.load(B_ptr + bc_row + t, mask=n_ok, other=0.0).to(tl.float32)
            C_t = tl.load(C_ptr + bc_row + t, mask=n_ok, other=0.0).to(tl.float32)
            dy = tl.load(dout_ptr + row + t, mask=d_ok, other=0.0).to(tl.float32)
            h_t = tl.load(scratch + (t - start) * BLOCK_D * BLOCK_N + tile)
            h_prev = tl.load(scratch + tl.maximum(t - 1 - start, 0) * BLOCK_D * BLOCK_N + tile)
            h_prev = tl.where(t > start, h_prev, h0)  # the chunk's first step starts from the saved state
            if HAS_Z:
                z_t = tl.load(z_ptr + row + t, mask=d_ok, other=0.0).to(tl.float32)
                sig = tl.sigmoid(z_t)
                y = tl.sum(h_t * C_t[None, :], axis=1) + skip * u_t
                dz = dy * y * sig * (1.0 + z_t * (1.0 - sig))
                tl.store(dz_ptr + row + t, dz.to(dz_ptr.dtype.element_ty), mask=d_ok)
                dy = dy * z_t * sig
            dD_acc += dy * u_t
            tl.store(dC_ptr + partial_row + t, tl.sum(dy[:, None] * h_t, axis=0), mask=n_ok)
            g = dy[:, None] * C_t[None, :] + carry
            decay = tl.exp2(dt[:, None] * A2)
            # dL/d(delta_t A) = g_t exp(delta_t A) h_{t-1}
            d_exponent = g * decay * h_prev
            dA_acc += d_exponent * dt[:, None]
            g_B = tl.sum(g * B_t[None, :], axis=1)  # dL/d(delta_t u_t)
            d_delta = tl.sum(d_exponent * A, axis=1) + g_B * u_t
            tl.store(dB_ptr + partial_row + t, tl.sum(g * (dt * u_t)[:, None], axis=0), mask=n_ok)
            tl.store(du_ptr + row + t, (g_B * dt + dy * skip).to(du_ptr.dtype.element_ty), mask=d_ok)
            if SOFTPLUS:
                d_delta = d_delta * tl.sigmoid(dt_raw)
            dbias_acc += d_delta
            tl.store(ddelta_ptr + row + t, d_delta.to(ddelta_ptr.dtype.element_ty), mask=d_ok)
            carry = decay * g
    tl.store(dA_ptr + (pid_b * n_channels + d[:, None]) * n_state + n[None, :], dA_acc, mask=dn_ok)
    if HAS_D:
        tl.store(dD_ptr + pid_b * n_channels + d, dD_acc, mask=d_ok)
    if HAS_BIAS:
        tl.store(dbias_ptr + pid_b * n_channels + d, dbias_acc, mask=d_ok)
