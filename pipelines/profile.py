"""Apply a named params profile (``profiles/<name>.yaml``) as DVC ``-S`` overrides or into params.yaml.

``python -m pipelines.profile paper`` prints ``-S key=value`` pairs for ``dvc exp run``;
``--write`` merges the profile into params.yaml instead. A profile is a partial params tree.

For the paper network at 323-frame crops with 64 clips per update, ``train.batch_size`` × ``train.accum_steps``
follow the GPU's memory (``model.training.batch_plan``; table in docs/gpu.md): the first CUDA device's, or
``--gpu-memory-gib`` (planning for another machine); without either, the profile's own numbers.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from model.training import batch_plan
from pipelines.common.cli import run_main
from pipelines.common.params import DEFAULT_PARAMS, ParamsError, read_tree
from pipelines.common.schema import validate_params

PROFILES_DIR = Path("profiles")


def load_profile(name: str, profiles_dir: Path = PROFILES_DIR) -> dict[str, Any]:
    path = profiles_dir / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in profiles_dir.glob("*.yaml"))
        raise FileNotFoundError(f"{path}: no such profile (known: {', '.join(known) or 'none'})")
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: a profile must be a mapping of params sections")
    return data


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def merge(base: dict[str, Any], overrides: dict[str, Any], source: str = "profile") -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base``; both and the result must pass the params schema, so a typo
    is an error naming the closest valid key (``ParamsError``, a ``KeyError``) instead of silently doing nothing."""
    validate_params(overrides, source)
    out = copy.deepcopy(base)
    for dotted, value in flatten(overrides).items():
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ParamsError(f"{source}: '{dotted}': '{part}' is not a section in the params file")
        node[parts[-1]] = value
    validate_params(out, f"params merged with {source}")
    return out


def set_args(overrides: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """``-S key=value`` arguments for ``dvc exp run``, validated against ``base`` params; a key the schema knows
    but ``base`` lacks is passed as ``+key=value`` (DVC's override syntax for adding a key)."""
    merge(base, overrides)
    present = set(flatten(copy.deepcopy(base)))
    args = []
    for dotted, value in flatten(overrides).items():
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        if any(ch.isspace() for ch in text):
            raise ParamsError(
                f"profile value for '{dotted}' contains whitespace; it cannot pass through $(...)"
            )
        args += ["-S", f"{'' if dotted in present else '+'}{dotted}={text}"]
    return args


def detected_gpu_memory_gib() -> float | None:
    """Total memory of the first CUDA device in GiB, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / 2**30


def follows_memory(merged: dict[str, Any]) -> bool:
    """Whether the batch plan's memory model describes these params: the paper network, 323-frame crops, 64
    clips per update (batch_size × accum_steps)."""
    model, train = merged.get("model", {}), merged.get("train", {})
    paper = {"hidden": 512, "depth": 24, "d_state": 16, "expand": 2}
    return (
        all(model.get(k) == v for k, v in paper.items())
        and train.get("frames") == batch_plan.FRAMES
        and train.get("batch_size", 0) * train.get("accum_steps", 1) == batch_plan.EFFECTIVE_BATCH
    )


def with_batch_for_memory(profile: dict[str, Any], memory_gib: float, name: str) -> dict[str, Any]:
    """``profile`` with ``train.batch_size`` / ``train.accum_steps`` from the batch plan for ``memory_gib``."""
    plan = batch_plan.plan_batch(memory_gib)
    out = copy.deepcopy(profile)
    out.setdefault("train", {}).update(batch_size=plan.batch_size, accum_steps=plan.accum_steps)
    print(
        f"profile {name}: train.batch_size {plan.batch_size} x train.accum_steps {plan.accum_steps} for a "
        f"{memory_gib:.0f} GiB GPU (estimated peak {plan.estimated_peak_gib:.1f} GiB; docs/gpu.md)",
        file=sys.stderr,
    )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="profile name, e.g. paper")
    parser.add_argument("--params", default=str(DEFAULT_PARAMS))
    parser.add_argument("--write", action="store_true", help="merge the profile into the params file")
    parser.add_argument(
        "--gpu-memory-gib",
        type=float,
        help="plan train.batch_size x accum_steps for a GPU of this memory (default: this machine's first GPU)",
    )
    args = parser.parse_args(argv)
    base = read_tree(args.params)
    validate_params(base, args.params)
    profile = load_profile(args.name)
    merged = merge(base, profile, f"profiles/{args.name}.yaml")
    memory = args.gpu_memory_gib if args.gpu_memory_gib is not None else detected_gpu_memory_gib()
    if memory is not None and follows_memory(merged):
        profile = with_batch_for_memory(profile, memory, args.name)
        merged = merge(base, profile, f"profiles/{args.name}.yaml")
    if args.write:
        Path(args.params).write_text(yaml.safe_dump(merged, sort_keys=False))
        print(f"{args.params}: applied profile '{args.name}' ({len(flatten(profile))} keys)", file=sys.stderr)
    else:
        print(" ".join(set_args(profile, base)))


if __name__ == "__main__":
    run_main("profile", main)
