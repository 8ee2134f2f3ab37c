"""Which params keys a stage really reads: a recording view of the params tree, for checking dvc.yaml's ``params:``.

With ``FLOWJAM_PARAMS_TRACE=<dir>`` set, ``load_params`` returns a ``TracedParams`` and, when the process exits,
appends the dotted keys that were read to ``<dir>/<stage>.txt`` (stage = the running module's file name). A key
counts as read when its value is fetched (``[]``, ``get``) or when its section is iterated or copied whole (as
provenance records do). ``tests/test_chained_dag.py`` compares these files with each stage's ``params:``.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any

TRACE_ENV = "FLOWJAM_PARAMS_TRACE"


class TracedParams(dict):
    """A dict that records into ``reads`` (shared with its sub-sections) the dotted keys fetched from it."""

    def __init__(self, data: dict[str, Any], reads: set[str] | None = None, prefix: str = "") -> None:
        self.reads = set() if reads is None else reads
        self.prefix = prefix
        super().__init__({k: self._wrap(k, v) for k, v in data.items()})

    def _wrap(self, key: str, value: Any) -> Any:
        return TracedParams(value, self.reads, f"{self.prefix}{key}.") if isinstance(value, dict) else value

    def _leaf(self, key: str) -> None:
        if not isinstance(dict.get(self, key), TracedParams):
            self.reads.add(f"{self.prefix}{key}")

    def _all(self) -> None:
        for key, value in dict.items(self):
            if isinstance(value, TracedParams):
                value._all()
            else:
                self.reads.add(f"{self.prefix}{key}")

    def __getitem__(self, key: str) -> Any:
        self._leaf(key)
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            self._leaf(key)
        return dict.get(self, key, default)

    def items(self):  # noqa: ANN201 - dict's own view types
        self._all()
        return dict.items(self)

    def values(self):  # noqa: ANN201
        self._all()
        return dict.values(self)

    def __iter__(self):  # noqa: ANN204
        self._all()
        return dict.__iter__(self)

    def copy(self) -> dict[str, Any]:
        self._all()
        return {k: v.copy() if isinstance(v, TracedParams) else v for k, v in dict.items(self)}

    def __reduce__(self):  # noqa: ANN204 - pickled (e.g. to a Ray worker) as a plain dict
        return (dict, (self.copy(),))

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return self.copy()


def traced(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` itself, or a ``TracedParams`` that reports at exit when ``FLOWJAM_PARAMS_TRACE`` is set."""
    trace_dir = os.environ.get(TRACE_ENV)
    if not trace_dir:
        return data
    params = TracedParams(data)
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
