"""``train.init_from``: start a run from a trained model's weights (fine-tuning), with its own optimiser and schedule.

``load_init(path)`` reads the model directory's config.json and identity (sha256 of its weights, which the run
fingerprint carries, so a different base never resumes another base's checkpoints). ``check_conditioning`` and
``check_dimensions`` refuse a base whose latent space or text conditioning differs from this run's — codec, latent
size, text encoder, text dimension — naming both values; ``apply_init`` copies the base's EMA weights into the freshly built network and
refuses differing keys or shapes (listing them), or with ``train.init_strict: false`` loads the tensors that match and
logs the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from model.data.stats import Standardiser
from model.flow.trained import artefact_sha256, load_trained, read_artefact_config
from model.runtime.errors import InputError
from model.training.config import PLACEMENT_KEYS

logger = logging.getLogger(__name__)

_MAX_LISTED = 8


class InitMismatchError(InputError, ValueError):
    """``train.init_from`` names a model this run cannot start from; the message names both values and the fix."""


@dataclass(frozen=True)
class InitSource:
    """A trained model directory to start from: its path as given, weights identity and config.json."""

    path: str
    sha256: str
    config: dict[str, Any]

    @property
    def stats(self) -> Standardiser:
        """The base's latent statistics (what its network learned to standardise with)."""
        return Standardiser(tuple(self.config["stats"]["mean"]), tuple(self.config["stats"]["var"]))


@dataclass(frozen=True)
class InitReport:
    """What ``apply_init`` did: tensors copied from the base, and those left at their fresh initialisation."""

    loaded: int
    not_loaded: list[str] = field(default_factory=list)


def _listed(items: list[str]) -> str:
    more = len(items) - _MAX_LISTED
    return ", ".join(items[:_MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


def _diff(base: Any, run: Any, prefix: str) -> list[str]:
    """'key: base X, this run Y' for every leaf that differs between two nested dicts."""
    if isinstance(base, dict) and isinstance(run, dict):
        out = []
        for key in sorted(set(base) | set(run)):
            if key not in PLACEMENT_KEYS:
                out += _diff(base.get(key, "<absent>"), run.get(key, "<absent>"), f"{prefix}.{key}")
        return out
    return [] if base == run else [f"{prefix}: base {base!r}, this run {run!r}"]


def load_init(path: str) -> InitSource:
    """The model directory ``path`` (``models/final`` of another run, or an exported model)."""
    d = Path(path)
    if not (d / "config.json").is_file():
        raise InitMismatchError(
            f"params.yaml: train.init_from = {path!r} holds no trained model (config.json + model.safetensors, "
            'e.g. models/final of another run copied aside); set it to one, or to "" to train from scratch'
        )
    return InitSource(path, artefact_sha256(d), read_artefact_config(d))


def _codec_identity(codec: dict[str, Any]) -> dict[str, Any]:
    """The codec keys that decide the latents: its name and its own sub-section."""
    name = codec.get("name")
    return {"name": name, **({name: codec[name]} if isinstance(codec.get(name), dict) else {})}


def _refuse(init: InitSource, problems: list[str]) -> None:
    if problems:
        raise InitMismatchError(
            f"train.init_from = {init.path} does not fit this run: {'; '.join(problems)}. A fine-tune keeps the "
            "base's codec and text encoder: set codec/text to the values in its config.json, or train from scratch"
        )


def check_conditioning(init: InitSource, codec: dict[str, Any], text: dict[str, Any]) -> None:
    """Refuse a base trained with another codec or text encoder (the ``codec:``/``text:`` sections; before any data
    is read). One line naming both values of every difference."""
    base = init.config
    problems = _diff(_codec_identity(base["codec"]), _codec_identity(codec), "codec")
    if base["text"].get("encoder") != text.get("encoder"):
        problems.append(
            f"text.encoder: base {base['text'].get('encoder')!r}, this run {text.get('encoder')!r}"
        )
    _refuse(init, problems)


def check_dimensions(init: InitSource, latent_dim: int, text_dim: int, text_encoder: str) -> None:
    """Refuse a base of another latent size (this run's data), text dimension or text model (the encoder's name)."""
    base = init.config
    problems = []
    if base["backbone"]["latent_dim"] != latent_dim:
        problems.append(f"latent size: base {base['backbone']['latent_dim']}, this run's data {latent_dim}")
    if base.get("text_encoder") not in (None, text_encoder):
        problems.append(f"text encoder: base {base['text_encoder']!r}, this run {text_encoder!r}")
    if base["backbone"]["text_dim"] != text_dim:
        problems.append(f"text dimension: base {base['backbone']['text_dim']}, this run {text_dim}")
    _refuse(init, problems)


def apply_init(net: nn.Module, init: InitSource, strict: bool) -> InitReport:
    """Copy the base's (EMA) weights into ``net``; refuse or, with ``strict=False``, skip keys/shapes that differ."""
    base_state = load_trained(init.path).net.state_dict()
    own = net.state_dict()
    missing = sorted(set(own) - set(base_state))
    extra = sorted(set(base_state) - set(own))
    shapes = sorted(k for k in set(own) & set(base_state) if own[k].shape != base_state[k].shape)
    if (missing or extra or shapes) and strict:
        sizes = _diff(init.config["backbone"], net.cfg.to_dict(), "model")
        parts = [f"{k}: base {tuple(base_state[k].shape)}, this run {tuple(own[k].shape)}" for k in shapes]
        parts += [f"not in the base: {_listed(missing)}"] if missing else []
        parts += [f"only in the base: {_listed(extra)}"] if extra else []
        raise InitMismatchError(
            f"train.init_from = {init.path} does not fit the network ({'; '.join(sizes) or 'same sizes'}): "
            f"{'; '.join(parts)}. Set model: to the base's sizes, or train.init_strict: false to load the "
            f"{len(own) - len(missing) - len(shapes)} matching tensors and initialise the rest"
        )
    matching = {k: base_state[k] for k in own if k in base_state and k not in shapes}
    net.load_state_dict(matching, strict=False)
    not_loaded = missing + shapes
    if not_loaded or extra:
        logger.warning(
            "train.init_from %s: loaded %d tensors; left at their initialisation: %s; base tensors unused: %s",
            init.path,
            len(matching),
            _listed(not_loaded) or "none",
            _listed(extra) or "none",
        )
    else:
        logger.info("train.init_from %s: loaded all %d tensors", init.path, len(matching))
    return InitReport(len(matching), not_loaded)
