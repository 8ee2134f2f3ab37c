"""Run an entry point as its ``__main__`` does and check how it ends on a user's mistake."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipelines.common.cli import run_main


def user_error(
    capsys: Any, main: Callable[[list[str] | None], Any], argv: list[str], extra: tuple = ()
) -> str:
    """The one line ``main(argv)`` printed on stderr before exiting with status 2 (asserted: no traceback)."""
    with pytest.raises(SystemExit) as info:
        run_main("stage", main, argv, extra=extra)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("stage: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err
