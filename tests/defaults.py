"""Params for tests from the one table of defaults, the params schema: a section as a dict or a typed model, and
library configs built from it with some keys changed (``config(TrainConfig, "train", steps=3)``)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pipelines.common.params import config_of
from pipelines.common.schema import ParamsSchema, validate_params

T = TypeVar("T")


def params(tree: dict[str, Any] | None = None) -> ParamsSchema:
    """Typed params: the schema's defaults with ``tree`` (a partial params tree) on top."""
    return validate_params(tree or {}, "test params")


def section_model(dotted: str, **overrides: Any) -> Any:
    """The typed section ``dotted`` (e.g. ``"codec.mel"``) at its defaults, with ``overrides``."""
    parts = dotted.split(".")
    tree: dict[str, Any] = {}
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = overrides
    model: Any = params(tree)
    for part in parts:
        model = getattr(model, part)
    return model


def section(dotted: str, **overrides: Any) -> dict[str, Any]:
    """The section ``dotted`` as a plain dict at its defaults, with ``overrides``."""
    return section_model(dotted, **overrides).model_dump()


def config(cls: type[T], dotted: str, **values: Any) -> T:
    """``cls`` built from section ``dotted``: keys of the section in ``values`` override it, the rest of ``values``
    are the fields the section lacks (e.g. the network's ``latent_dim``)."""
    known = set(section_model(dotted).model_dump())
    names = {f.name for f in dataclasses.fields(cls)}
    # a key of neither goes to the section too, so that the schema refuses it as params.yaml would
    extra = {k: v for k, v in values.items() if k not in known and k in names}
    overrides = {k: v for k, v in values.items() if k not in extra}
    return config_of(cls, section_model(dotted, **overrides), **extra)


def net_config(**values: Any) -> Any:
    """A ``VelocityNetConfig``: the ``model:`` section's defaults with ``values`` (and ``latent_dim``/``text_dim``)."""
    from model.network.backbone import VelocityNetConfig

    return config(VelocityNetConfig, "model", **values)


def flow_config(**overrides: Any) -> Any:
    """A ``FlowConfig`` from the ``train:`` section's ``t_mean``/``t_std``/``cond_drop`` with ``overrides``."""
    from model.flow.objective import FlowConfig

    train = section_model("train", **overrides)
    return FlowConfig(t_mean=train.t_mean, t_std=train.t_std, cond_drop=train.cond_drop)
