"""ODE samplers for the flow-matching velocity net, with classifier-free guidance.

The flow of ``model/flow/objective.py`` is x_t = (1 − t)·z + t·x with z ~ N(0, I) at t = 0 and data x at t = 1; the
net predicts the velocity v(x_t, t, c) ≈ x − z. Sampling integrates dx/dt = s(x, t) from t = 0 to t = 1 on
the uniform grid t_i = i / steps, h = 1 / steps, where s is the guided velocity

    s(x, t) = v(x, t, ∅) + w · (v(x, t, c) − v(x, t, ∅))          (w = ``cfg_scale``; paper: 3.5)

evaluated with ONE forward over the conditional and null halves stacked on the batch axis. Solvers:

    euler     x_{i+1} = x_i + h·s(x_i, t_i)                                        1 evaluation / step, order 1
    midpoint  x_{i+1} = x_i + h·s(x_i + h/2·s(x_i, t_i), t_i + h/2)                 2 evaluations / step, order 2
    heun      k1 = s(x_i, t_i), k2 = s(x_i + h·k1, t_{i+1}),
              x_{i+1} = x_i + h/2·(k1 + k2)                                        2 evaluations / step, order 2
    ab2       x_{i+1} = x_i + h·(3/2·k_i − 1/2·k_{i−1}), k_i = s(x_i, t_i)           1 evaluation / step, order 2
              (Adams–Bashforth two-step: reuses the previous step's velocity; the first step is Euler)

Shapes: latents (B, D, T); text (B, L, E) with text_mask (B, L) bool (True = real token); the null text is
(1, L0, E) and is broadcast to the batch. Each batch item's initial noise comes from its own
``torch.Generator`` (``noise_generator(prompt_id, seed_index)``), so a prompt's audio does not depend on which
other prompts share its batch.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model.flow.tokens import pad_tokens
from model.network.backbone import check_input_values

log = logging.getLogger(__name__)

METHODS = ("euler", "midpoint", "heun", "ab2")
SINGLE_EVALUATION_METHODS = ("euler", "ab2")


@dataclass(frozen=True)
class SamplerConfig:
    """How to integrate: ``steps`` uniform steps of ``method`` with guidance scale ``cfg_scale``."""

    steps: int
    cfg_scale: float
    method: str

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"sampler steps must be a positive integer, got {self.steps!r}")
        if self.method not in METHODS:
            raise ValueError(
                f"sampler method {self.method!r} is unknown; expected one of {', '.join(METHODS)}"
            )
        if not math.isfinite(float(self.cfg_scale)):
            raise ValueError(f"sampler cfg_scale must be a finite number, got {self.cfg_scale!r}")

    @property
    def evaluations(self) -> int:
        """Number of (batched, guided) network evaluations one sample costs."""
        return self.steps * (1 if self.method in SINGLE_EVALUATION_METHODS else 2)


def stable_seed(prompt_id: str, seed_index: int, base_seed: int = 0) -> int:
    """A 63-bit seed from SHA-256 of ``base_seed:prompt_id:seed_index``: the same in every process and run."""
    digest = hashlib.sha256(f"{int(base_seed)}:{prompt_id}:{int(seed_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def noise_generator(prompt_id: str, seed_index: int, base_seed: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``stable_seed(prompt_id, seed_index, base_seed)``."""
    return torch.Generator(device="cpu").manual_seed(stable_seed(prompt_id, seed_index, base_seed))


def initial_noise(
    generators: torch.Generator | Sequence[torch.Generator] | None,
    batch: int,
    latent_dim: int,
    n_frames: int,
) -> torch.Tensor:
    """z ~ N(0, I) of shape (batch, latent_dim, n_frames), float32 on CPU.

    With a sequence of generators (one per item) item b is drawn from ``generators[b]`` alone; with one
    generator the whole batch is drawn from it; with None from the global RNG.
    """
    shape = (latent_dim, n_frames)
    if generators is None or isinstance(generators, torch.Generator):
        return torch.randn((batch, *shape), generator=generators)
    if len(generators) != batch:
        raise ValueError(f"got {len(generators)} noise generators for a batch of {batch}")
    return torch.stack([torch.randn(shape, generator=g) for g in generators])


def stack_condition(
    text: torch.Tensor, text_mask: torch.Tensor, null_text: torch.Tensor, null_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack the conditional batch over the null condition: ((2B, L, E), (2B, L)), first B conditional.

    text: (B, L, E), text_mask: (B, L) bool; null_text: (1, L0, E) or (B, L0, E), null_mask likewise. Both
    halves are right-padded (mask False) to max(L, L0) tokens.
    """
    b = text.shape[0]
    if null_text.shape[0] == 1:
        null_text, null_mask = null_text.expand(b, -1, -1), null_mask.expand(b, -1)
    if null_text.shape[0] != b or null_text.shape[-1] != text.shape[-1]:
        raise ValueError(f"null text {tuple(null_text.shape)} does not match text {tuple(text.shape)}")
    length = max(text.shape[1], null_text.shape[1])
    text, text_mask = pad_tokens(text, text_mask.bool(), length)
    null_text, null_mask = pad_tokens(null_text.to(text.dtype), null_mask.bool(), length)
    return torch.cat([text, null_text]), torch.cat([text_mask, null_mask])


class GuidedVelocity:
    """s(x, t) = v(x, t, ∅) + w·(v(x, t, c) − v(x, t, ∅)) with one batched forward of size 2B.

    w = 1 is the conditional velocity and w = 0 the unconditional one; both skip the half they do not need.
    """

    def __init__(
        self,
        net: nn.Module,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        null_text: torch.Tensor,
        null_mask: torch.Tensor,
        cfg_scale: float,
        frame_mask: torch.Tensor | None = None,
    ):
        self.net = net
        self.cfg_scale = float(cfg_scale)
        self.batch = text.shape[0]
        self.frame_mask = frame_mask
        if null_text.shape[0] == 1:
            null_text, null_mask = null_text.expand(self.batch, -1, -1), null_mask.expand(self.batch, -1)
        if self.cfg_scale == 1.0:
            self.text, self.text_mask = text, text_mask.bool()
        elif self.cfg_scale == 0.0:
            self.text, self.text_mask = null_text, null_mask.bool()
        else:
            self.text, self.text_mask = stack_condition(text, text_mask, null_text, null_mask)
            if frame_mask is not None:
                self.frame_mask = torch.cat([frame_mask, frame_mask])

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """x: (B, D, T), t: scalar time -> guided velocity (B, D, T)."""
        single = self.cfg_scale in (0.0, 1.0)
        xx = x if single else torch.cat([x, x])
        tt = torch.full((xx.shape[0],), float(t), dtype=x.dtype, device=x.device)
        v = self.net(xx, tt, self.text, self.text_mask, self.frame_mask)
        if single:
            return v
        v_cond, v_null = v[: self.batch], v[self.batch :]
        return v_null + self.cfg_scale * (v_cond - v_null)


def solver_step(
    velocity: Any, x: torch.Tensor, t: float, h: float, method: str, previous: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of ``method`` from (x (B, D, T), t) to t + h -> (x_next, s(x, t)).

    ``previous`` is s at the previous grid point, used by the multistep ``ab2`` (None: an Euler step).
    """
    k1 = velocity(x, t)
    if method == "euler" or (method == "ab2" and previous is None):
        return x + h * k1, k1
    if method == "ab2":
        return x + h * (1.5 * k1 - 0.5 * previous), k1
    if method == "midpoint":
        return x + h * velocity(x + (0.5 * h) * k1, t + 0.5 * h), k1
    k2 = velocity(x + h * k1, t + h)
    return x + (0.5 * h) * (k1 + k2), k1


def check_solver(steps: int, method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"sampler method {method!r} is unknown; expected one of {', '.join(METHODS)}")
    if steps < 1:
        raise ValueError(f"sampler steps must be >= 1, got {steps}")


def integrate(
    velocity: Any,
    x0: torch.Tensor,
    steps: int,
    method: str = "euler",
    progress: Any = None,
    after_step: Any = None,
) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) from t = 0 to 1 in ``steps`` uniform steps; x0: (B, D, T).

    ``velocity(x, t)`` takes x (B, D, T) and a float t. ``progress``, if given, is called with 1 per step.
    ``after_step(x, t_next) -> x``, if given, may change the state after each step (e.g. put a known region
    back on its path, ``model/flow/editing.py``).
    """
    check_solver(steps, method)
    h = 1.0 / steps
    x, previous = x0, None
    for i in range(steps):
        x, previous = solver_step(velocity, x, i / steps, h, method, previous)
        if after_step is not None:
            x = after_step(x, (i + 1) / steps)
        if progress is not None:
            progress(1)
    return x


def _latent_dim(net: nn.Module) -> int:
    for holder in (net, getattr(net, "cfg", None), getattr(net, "config", None)):
        dim = getattr(holder, "latent_dim", None)
        if isinstance(dim, int):
            return dim
    raise ValueError("cannot tell the latent dimension of the velocity net: pass latent_dim= or noise=")


@torch.no_grad()
def sample(
    net: nn.Module,
    text: torch.Tensor,
    text_mask: torch.Tensor,
    null_text: torch.Tensor,
    null_mask: torch.Tensor,
    n_frames: int,
    steps: int = 100,
    cfg_scale: float = 3.5,
    method: str = "euler",
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    *,
    latent_dim: int | None = None,
    noise: torch.Tensor | None = None,
    frame_mask: torch.Tensor | None = None,
    progress: Any = None,
) -> torch.Tensor:
    """Generate standardised latents (B, D, n_frames) for B captions by integrating t = 0 → 1.

    text: (B, L, E) float, text_mask: (B, L) bool (True = real token); null_text/null_mask: the encoded
    empty caption, (1, L0, E)/(1, L0). ``generator``: one ``torch.Generator`` per item (batch-independent
    seeding, see ``noise_generator``) or one for the batch. ``noise`` (B, D, n_frames) overrides the drawn
    initial noise. ``frame_mask`` (B, n_frames) bool is passed to the net; False frames are zeroed in the
    output. Runs on the device of the net's parameters; returns float32 on that device.
    """
    cfg = SamplerConfig(steps=int(steps), cfg_scale=float(cfg_scale), method=method)
    was_training = net.training
    net.eval()
    param = next(net.parameters(), None)
    device = param.device if param is not None else text.device
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    b = text.shape[0]
    if text_mask.shape != text.shape[:2]:
        raise ValueError(f"text_mask {tuple(text_mask.shape)} does not match text {tuple(text.shape)}")
    # the value checks the net's forward leaves to batch makers: once per call here, not per step
    check_input_values(text_mask.bool(), None if frame_mask is None else frame_mask.bool())
    check_input_values(null_mask.bool())
    if noise is None:
        noise = initial_noise(generator, b, latent_dim or _latent_dim(net), int(n_frames))
    if noise.shape[0] != b or noise.shape[-1] != n_frames:
        raise ValueError(f"noise {tuple(noise.shape)} does not match batch {b} and n_frames {n_frames}")
    if frame_mask is not None:
        frame_mask = frame_mask.to(device=device, dtype=torch.bool)
    velocity = GuidedVelocity(
        net,
        text.to(device=device, dtype=dtype),
        text_mask.to(device),
        null_text.to(device=device, dtype=dtype),
        null_mask.to(device),
        cfg.cfg_scale,
        frame_mask,
    )
    try:
        x = integrate(velocity, noise.to(device=device, dtype=dtype), cfg.steps, cfg.method, progress)
    finally:
        net.train(was_training)
    if frame_mask is not None:
        x = x * frame_mask[:, None, :].to(x.dtype)
    return x.float()
