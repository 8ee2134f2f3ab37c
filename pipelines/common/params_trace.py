"""Which params keys a stage really reads: a recording view of the params tree, for checking dvc.yaml's ``params:``.

With ``FLOWJAM_PARAMS_TRACE=<dir>`` set, ``load_params`` returns a ``TracedParams`` view of the typed params and,
when the process exits, appends the dotted keys that were read to ``<dir>/<stage>.txt`` (stage = the running
module's file name). A key counts as read when its attribute is fetched (``params.train.steps``) or when its
section is dumped whole (``model_dump()``, as provenance records and library configs do). ``tests/test_chained_dag.py`` compares these files with each stage's ``params:``.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

TRACE_ENV = "FLOWJAM_PARAMS_TRACE"


class TracedParams:
    """A read-only view of a params section (a pydantic model) that records into ``reads`` (shared with its
    sub-sections) the dotted keys fetched from it. Attribute access reads one leaf; ``model_dump`` (what
    provenance records and library configs are built from) reads every leaf of the section."""

    __slots__ = ("_model", "_prefix", "reads")

    def __init__(self, model: BaseModel, reads: set[str] | None = None, prefix: str = "") -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "reads", set() if reads is None else reads)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._model, name)
        if name in type(self._model).model_fields:
            if isinstance(value, BaseModel):
                return TracedParams(value, self.reads, f"{self._prefix}{name}.")
            self.reads.add(f"{self._prefix}{name}")
        elif name == "model_dump":
            self._all()
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("params are read-only")

    def _all(self) -> None:
        self.reads.update(f"{self._prefix}{key}" for key in leaf_keys(self._model.model_dump()))

    def unwrap(self) -> BaseModel:
        """The plain section (its every key counts as read)."""
        self._all()
        return self._model

    def __repr__(self) -> str:
        return f"TracedParams({self._model!r})"

    def __eq__(self, other: object) -> bool:
        self._all()
        return self._model == (other._model if isinstance(other, TracedParams) else other)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):  # noqa: ANN204 - pickled (e.g. to a Ray worker) as the plain section
        return (_identity, (self.unwrap(),))


def section_fields(section: Any) -> set[str]:
    """The key names of a params section, plain or traced (asking is not a read)."""
    model = section._model if isinstance(section, TracedParams) else section
    return set(type(model).model_fields)


def _identity(value: Any) -> Any:
    return value


def traced(params: Any) -> Any:
    """``params`` itself, or a ``TracedParams`` view that reports at exit when ``FLOWJAM_PARAMS_TRACE`` is set."""
    trace_dir = os.environ.get(TRACE_ENV)
    if not trace_dir:
        return params
    params = TracedParams(params)
    stage = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "unknown"

    def report() -> None:
        Path(trace_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(trace_dir) / f"{stage}.txt", "a") as fh:
            fh.writelines(f"{key}\n" for key in sorted(params.reads))

    atexit.register(report)
    return params


def leaf_keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    """Every dotted leaf key of a params tree."""
    keys: set[str] = set()
    for key, value in tree.items():
        keys |= leaf_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return keys


def listed_keys(entries: list[Any], tree: dict[str, Any]) -> set[str]:
    """The leaf keys of ``tree`` that a dvc.yaml stage's ``params:`` entries name (a section covers its leaves)."""
    names: list[str] = []
    for entry in entries:
        if isinstance(entry, dict):  # {params.yaml: [keys]} form
            for keys in entry.values():
                names += list(keys or [])
        else:
            names.append(str(entry))
    leaves = leaf_keys(tree)
    return {leaf for name in names for leaf in leaves if leaf == name or leaf.startswith(name + ".")}


def read_keys(trace_dir: str | os.PathLike, stage: str) -> set[str]:
    """The keys a traced run of ``stage`` read (every process of it that loaded params)."""
    path = Path(trace_dir) / f"{stage}.txt"
    return set(path.read_text().split()) if path.is_file() else set()


def params_mismatch(listed: set[str], read: set[str]) -> tuple[list[str], list[str]]:
    """(read but not listed — ``dvc exp run -S`` would not rerun the stage; listed but not read — it would rerun
    for nothing)."""
    return sorted(read - listed), sorted(listed - read)
