"""Read params.yaml: the one source of configuration for every stage (see README for each key)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from pipelines.common.errors import ParamsError
from pipelines.common.params_trace import traced
from pipelines.common.schema import validate_params

__all__ = ["DEFAULT_PARAMS", "ParamsError", "get", "load_params", "stage_arg_parser"]

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The params tree of ``path``, checked against the schema (``pipelines/common/schema.py``): an unknown key
    or a value of the wrong type raises ``ParamsError`` naming the key and the closest valid one."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: params file not found (run from the repository root)")
    with p.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{p}: expected a mapping at top level")
    validate_params(data, str(p))
    return traced(data)


def get(params: dict[str, Any], dotted: str, default: Any = ...) -> Any:
    """``get(params, "train.steps")``; raises ParamsError naming the key when absent and no default."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is ...:
                raise ParamsError(f"params.yaml: missing key '{dotted}'")
            return default
        node = node[part]
    return node


def stage_arg_parser(description: str) -> argparse.ArgumentParser:
    """The common command line of every stage: ``--params`` (default params.yaml)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default=str(DEFAULT_PARAMS), help="params file (default: params.yaml)")
    return parser
