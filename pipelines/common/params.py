"""Read params.yaml into the typed params of the one schema (``pipelines/common/schema.py``).

``load_params(path)`` validates the file and returns a :class:`~pipelines.common.schema.ParamsSchema`: every section
typed (``params.train.steps`` is an int), every key the file leaves out at the schema's default, an unknown key or a
value of the wrong type refused with one error naming the key (``ParamsError``). The schema is the only table of
defaults and types: stages read ``params.<section>.<key>`` and build library configs with :func:`config_of`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

from model.runtime.errors import InputError
from pipelines.common.errors import ParamsError
from pipelines.common.params_trace import section_fields, traced
from pipelines.common.schema import ParamsSchema, validate_params

__all__ = ["DEFAULT_PARAMS", "ParamsError", "ParamsSchema", "config_of", "load_params", "stage_arg_parser"]

DEFAULT_PARAMS = Path("params.yaml")
T = TypeVar("T")


def read_tree(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The raw params tree of ``path`` (not validated); ``FileNotFoundError``/``ParamsError`` naming the file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"{p}: params file not found (run from the repository root, or pass --params)"
        )
    with p.open() as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ParamsError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{p}: expected a mapping of params sections at top level")
    return data


def load_params(path: str | Path = DEFAULT_PARAMS, missing_ok: bool = False) -> ParamsSchema:
    """The typed params of ``path`` (``missing_ok``: the schema's defaults when the file does not exist)."""
    if missing_ok and not Path(path).exists():
        return traced(ParamsSchema())
    return traced(validate_params(read_tree(path), str(path)))


def config_of(cls: type[T], section: Any, **extra: Any) -> T:
    """The library dataclass ``cls`` built from a typed params section: each field from the section's key of the
    same name (only those keys count as read), or from ``extra``. A value the library refuses (its
    ``__post_init__`` raises) is a ``ParamsError``."""
    names = {f.name for f in dataclasses.fields(cls)} & section_fields(section) - set(extra)
    try:
        return cls(**{k: getattr(section, k) for k in names}, **extra)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):  # already says which key and what to do
            raise
        raise ParamsError(str(exc)) from None


def stage_arg_parser(description: str) -> argparse.ArgumentParser:
    """The common command line of every stage: ``--params`` (default params.yaml)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default=str(DEFAULT_PARAMS), help="params file (default: params.yaml)")
    return parser
