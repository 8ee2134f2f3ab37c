"""Activation memory per sample of the paper-size network (24 x 512, 189.7M parameters), measured on CPU.

What is measured: the bytes autograd saves for the backward (every tensor packed by
``torch.autograd.graph.saved_tensors_hooks``, each storage counted once, parameters excluded) during one
training forward of the flow loss at batch 1, for a few crop lengths, in fp32 and under bf16 autocast, with the
torch scan, and (``bf16_kernel``) with a forward that saves exactly the tensors mamba_ssm's CUDA kernel saves
in place of the torch scan's. Saved activations grow linearly in frames, so a least-squares line through the lengths gives bytes
per frame, and the estimate for a crop of F frames at batch B is B * (a + b * F). The memory that does not
scale with the batch (weights, gradients, AdamW moments, EMA: 20 bytes per parameter in fp32) is reported
beside it; a second forward at batch 2 separates what each sample adds from what a step holds once (under
autocast, the bf16 copies of the weights). ``fits_24gb_323`` says how many 323-frame samples fit a 24 GB card after that and a 15 % reserve for
the allocator's fragmentation, the CUDA context and the backward's transient buffers. ``make gpu-check``
measures the real peak on a GPU.

Run: .venv/bin/python bench/bench_memory.py [--frames 16 32 64] -> prints a table, writes bench/results/memory.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import model.network.mamba as mamba_module  # noqa: E402
from model.flow.objective import PAPER_FLOW, FlowMatching  # noqa: E402
from model.network import scan_cuda, scan_fused  # noqa: E402
from model.network.backbone import VelocityNet, VelocityNetConfig, count_parameters  # noqa: E402
from model.network.scan import selective_scan  # noqa: E402

PAPER_FRAMES = 323  # 30 s at the ACE-Step DCAE's 10.77 frames/s
TEXT_TOKENS = 128  # text.max_length of the paper profile: the longest condition
STATE_BYTES_PER_PARAM = 20  # fp32 weights 4 + gradients 4 + AdamW exp_avg 4 + exp_avg_sq 4 + EMA copy 4
RESERVE = 0.15
GPU_BYTES = 24 * 1024**3


def saved_bytes(flow: FlowMatching, net: torch.nn.Module, frames: int, autocast: bool, batch: int = 1) -> int:
    """Bytes saved for the backward by one flow-loss forward at ``batch`` over ``frames`` frames."""
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, net.cfg.latent_dim, frames, generator=gen)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    text = torch.randn(batch, TEXT_TOKENS, net.cfg.text_dim, generator=gen)
    text_mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.bool)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, _ = flow(x, mask, text, text_mask, gen)
    loss.backward()  # the measured graph is a real, complete one
    net.zero_grad(set_to_none=True)
    return sum(seen.values())


class KernelSavedSet(torch.autograd.Function):
    """Forward of the torch scan that saves for the backward exactly what mamba_ssm's kernel saves: u, delta,
    A, B, C, D, z, delta_bias in their own dtypes, the chunk states x (B, D, ceil(L/2048), 2N) fp32 and the
    ungated output. Its backward recomputes the torch scan from those saved tensors (the kernel recomputes too)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias):
        with torch.no_grad():
            out = selective_scan(u, delta, A, B, C, D, None, delta_bias, True)
        states = u.new_zeros(
            u.shape[0], u.shape[1], -(-u.shape[2] // 2048), 2 * A.shape[1], dtype=torch.float32
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states, out)
        return out * torch.nn.functional.silu(z)

    @staticmethod
    def backward(ctx, grad):
        saved = ctx.saved_tensors[:8]
        with torch.enable_grad():
            leaves = [
                None if s is None else s.detach().requires_grad_(need)
                for s, need in zip(saved, ctx.needs_input_grad, strict=True)
            ]
            u, delta, A, B, C, D, z, delta_bias = leaves
            out = selective_scan(u, delta, A, B, C, D, None, delta_bias, True) * torch.nn.functional.silu(z)
            wanted = [x for x in leaves if x is not None and x.requires_grad]
            grads = iter(torch.autograd.grad(out, wanted, grad))
        return tuple(next(grads) if x is not None and x.requires_grad else None for x in leaves)


def kernel_stand_in(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    return KernelSavedSet.apply(u, delta, A, B, C, D, z, delta_bias)


def use_kernel_saved_set() -> None:
    """Route the mixers through the CUDA seam to ``kernel_stand_in`` (on CPU, for this measurement)."""
    scan_cuda._import_selective_scan_fn = lambda: (kernel_stand_in, "")
    scan_fused._import_mamba_inner_fn = lambda: (None, "memory measurement: the unfused kernel's saved set")
    mamba_module.choose_scan_backend = lambda requested, device, probes=None: ("cuda", "memory measurement")


def fit_line(xs: list[int], ys: list[int]) -> tuple[float, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--out", default="bench/results/memory.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    cfg = VelocityNetConfig.paper()
    cfg = VelocityNetConfig(**{**cfg.to_dict(), "scan_backend": "torch"})
    net = VelocityNet(cfg)
    n_params = count_parameters(net)
    flow = FlowMatching(net, PAPER_FLOW, torch.zeros(1, 1, cfg.text_dim), torch.ones(1, 1, dtype=torch.bool))
    flow.train()
    fixed = n_params * STATE_BYTES_PER_PARAM
    result = {
        "parameters": n_params,
        "text_tokens": TEXT_TOKENS,
        "frames_measured": args.frames,
        "fixed_bytes": fixed,
        "gpu_bytes": GPU_BYTES,
        "reserve": RESERVE,
        "precisions": {},
    }
    print(f"paper network: {n_params / 1e6:.1f}M parameters; weights+grads+AdamW+EMA {fixed / 2**30:.2f} GiB")
    print(f"{'precision':>9} {'frames':>6} {'saved MiB':>10}")
    for name, autocast in (("fp32", False), ("bf16", True), ("bf16_kernel", True)):
        if name == "bf16_kernel":
            use_kernel_saved_set()
        measured = []
        for frames in args.frames:
            measured.append(saved_bytes(flow, net, frames, autocast))
            print(f"{name:>9} {frames:>6} {measured[-1] / 2**20:>10.1f}")
        a, b = fit_line(args.frames, measured)
        # batch 2 at the longest crop separates what each sample adds from what a step holds once (under
        # autocast: the bf16 copies of the weights)
        longest = max(args.frames)
        pair = saved_bytes(flow, net, longest, autocast, batch=2)
        single = measured[args.frames.index(longest)]
        per_step = 2 * single - pair
        per_sample = (pair - single) + b * (PAPER_FRAMES - longest)
        usable = GPU_BYTES * (1 - RESERVE) - fixed - per_step
        fits = int(usable // per_sample)
        result["precisions"][name] = {
            "saved_bytes_batch1": measured,
            "saved_bytes_batch2_longest": pair,
            "line_intercept_bytes": a,
            "bytes_per_frame": b,
            "per_step_bytes": per_step,
            "per_sample_bytes_323": per_sample,
            "fits_24gb_323": fits,
        }
        print(
            f"{name}: {b / 2**20:.2f} MiB/frame; {per_step / 2**20:.0f} MiB once per step; "
            f"{per_sample / 2**30:.2f} GiB per 323-frame sample; {fits} samples fit 24 GB"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
