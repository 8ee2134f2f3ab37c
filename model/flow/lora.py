"""LoRA adapters on the velocity network through ``peft``: which layers, how they are trained, merged and stored.

``add_lora(net, settings)`` wraps the ``nn.Linear`` / ``nn.Conv1d`` layers whose module path matches one of
``settings.targets`` (``fnmatch`` patterns on the full dotted path, ``*`` also matching dots, e.g.
``blocks.*.cross_attn.to_*``) in peft LoRA layers — W x + (alpha / rank) · B A x, B zero-initialised, so the
wrapped network starts as the base — and freezes everything else. A layer must run as a module in the forward pass:
the Mamba mixer reads ``dt_proj.weight`` and ``conv1d.weight`` directly inside the selective scan (the dt bias is
added in the scan, as mamba_ssm does), so a wrapper there would never run; ``add_lora`` probes the network once and
refuses such a target instead of training an adapter that does nothing.

Adapter weights are the ``lora_A`` / ``lora_B`` tensors of the state dict (``adapter_state``); ``merged`` returns a
copy with every adapter folded into its base weight and the wrappers removed (the plain VelocityNet state dict).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from model.runtime.errors import InputError

ADAPTER_NAME = "default"
_WRAPPABLE = (nn.Linear, nn.Conv1d)
_MAX_LISTED = 8


class LoraTargetError(InputError, ValueError):
    """``train.lora.targets`` names no module, or a module LoRA cannot adapt; the message says which and why."""


@dataclass(frozen=True)
class LoraSettings:
    """``train.lora`` in params.yaml (meaning of each key: docs/finetune.md; defaults: the params schema)."""

    rank: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]
    merge: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.rank < 0:
            raise ValueError(f"params.yaml: train.lora.rank must be >= 0 (0 = no LoRA), got {self.rank}")
        if self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(
                f"params.yaml: need train.lora.alpha > 0 and 0 <= train.lora.dropout < 1, got {self.alpha}, "
                f"{self.dropout}"
            )
        if self.rank and not self.targets:
            raise ValueError("params.yaml: train.lora.targets is empty; name the layers to adapt")

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    def identity(self) -> dict[str, Any]:
        """What changes the trained adapters (``merge`` only changes how they are exported)."""
        return {k: v for k, v in asdict(self).items() if k != "merge"} | {"targets": list(self.targets)}


def _listed(items: Sequence[str]) -> str:
    more = len(items) - _MAX_LISTED
    return ", ".join(items[:_MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


def resolve_targets(net: nn.Module, patterns: Sequence[str]) -> list[str]:
    """The module paths that ``patterns`` match, sorted; refuses a pattern matching nothing or a non-Linear/Conv1d."""
    modules = dict(net.named_modules())
    chosen: set[str] = set()
    for pattern in patterns:
        hits = [name for name in modules if name and fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            leaves = [n for n, m in modules.items() if isinstance(m, _WRAPPABLE)]
            raise LoraTargetError(
                f"params.yaml: train.lora.targets pattern {pattern!r} matches no module of the network; "
                f"Linear/Conv1d layers are e.g. {_listed(leaves)}"
            )
        wrong = [f"{n} ({type(modules[n]).__name__})" for n in hits if not isinstance(modules[n], _WRAPPABLE)]
        if wrong:
            raise LoraTargetError(
                f"params.yaml: train.lora.targets pattern {pattern!r} matches {_listed(wrong)}; LoRA adapts "
                "Linear and Conv1d layers only (narrow the pattern, e.g. append .to_q)"
            )
        chosen.update(hits)
    return sorted(chosen)


def lora_layers(net: nn.Module) -> dict[str, nn.Module]:
    """``{module path: peft LoRA layer}`` of a network with adapters."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {name: m for name, m in net.named_modules() if isinstance(m, BaseTunerLayer)}


def _probe(net: nn.Module) -> set[str]:
    """Names of the LoRA layers that one tiny eval-mode forward pass calls (no RNG is drawn)."""
    cfg = net.cfg
    called: set[str] = set()
    hooks = [
        layer.register_forward_hook(lambda *_, name=name: called.add(name))
        for name, layer in lora_layers(net).items()
    ]
    device = next(net.parameters()).device
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(
                torch.zeros(1, cfg.latent_dim, 4, device=device),
                torch.full((1,), 0.5, device=device),
                torch.zeros(1, 2, cfg.text_dim, device=device),
                torch.ones(1, 2, dtype=torch.bool, device=device),
            )
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    return called


def add_lora(net: nn.Module, settings: LoraSettings) -> list[str]:
    """Wrap the target layers of ``net`` (a VelocityNet, in place) in LoRA adapters and freeze every other weight.

    Returns the adapted module paths. Raises LoraTargetError when a pattern matches nothing, a non-Linear/Conv1d
    module, or a layer whose weight the network reads directly (its wrapper would never run).
    """
    from peft import LoraConfig, inject_adapter_in_model

    targets = resolve_targets(net, settings.targets)
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        bias="none",
    )
    inject_adapter_in_model(config, net, adapter_name=ADAPTER_NAME)
    for name, param in net.named_parameters():
        param.requires_grad_(".lora_" in name)
    idle = sorted(set(lora_layers(net)) - _probe(net))
    if idle:
        raise LoraTargetError(
            f"params.yaml: train.lora.targets: {_listed(idle)} never run(s) as a module in the forward pass (the "
            "Mamba scan reads dt_proj.weight and conv1d.weight directly), so an adapter there would not train; "
            "leave those layers out of the patterns"
        )
    return targets


def adapter_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors (``...lora_A.default.weight``, ``...lora_B.default.weight``) of ``net``, on CPU."""
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items() if ".lora_" in k}


def load_adapter(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load adapter tensors into a network that ``add_lora`` prepared with the same settings."""
    expected = set(adapter_state(net))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{source} does not fit the adapters its config.json names: missing {_listed(missing)}, "
            f"unexpected {_listed(unexpected)}"
        )
    net.load_state_dict(state, strict=False)


def merged(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every adapter merged into its base layer and the peft wrappers removed."""
    out = copy.deepcopy(net)
    for name, layer in lora_layers(out).items():
        layer.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent_name) if parent_name else out, child, layer.get_base_layer())
    out.requires_grad_(False)
    return out
