"""Validation shared by every ``from_params``: a params.yaml section may hold only known keys."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any


def reject_unknown_keys(
    section: Mapping[str, Any], known: Iterable[str], name: str, error: type[Exception] = ValueError
) -> None:
    """Raise ``error`` naming every key of ``section`` not in ``known`` (``name`` is the section's dotted path).

    A misspelt key would otherwise be ignored silently and the default used instead.
    """
    known = set(known)
    unknown = sorted(set(section) - known)
    if unknown:
        hints = [
            f"{name}.{key}"
            + "".join(
                f" (did you mean {name}.{m}?)"
                for m in difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.5)
            )
            for key in unknown
        ]
        raise error(
            f"params.yaml: unknown {name} key(s) {', '.join(hints)} "
            f"(unknown keys are an error: a typo would silently do nothing); known: {', '.join(sorted(known))}"
        )
