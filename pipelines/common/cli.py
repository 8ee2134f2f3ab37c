"""How every entry point ends on a user's mistake: one line naming the key or file and the fix, exit status 2.

``run_main(name, main, argv)`` calls ``main(argv)``; an :class:`~model.runtime.errors.InputError` (bad params,
unreadable input, ...), a ``FileNotFoundError`` or one of the ``extra`` types a stage names (e.g. the CUDA scan's
``CudaScanUnavailableError``) is printed as ``<name>: <message>`` on stderr and the process exits with status 2. Anything else is a bug and keeps its
traceback. ``FLOWJAM_TRACEBACK=1`` shows the traceback of user errors too (for bug reports).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from model.runtime.errors import InputError

USER_ERRORS: tuple[type[BaseException], ...] = (InputError, FileNotFoundError)
TRACEBACK_ENV = "FLOWJAM_TRACEBACK"


def run_main(
    name: str,
    main: Callable[[list[str] | None], Any],
    argv: list[str] | None = None,
    extra: tuple[type[BaseException], ...] = (),
) -> Any:
    """``main(argv)``, with a user error turned into one line on stderr and ``SystemExit(2)``."""
    try:
        return main(argv)
    except USER_ERRORS + extra as exc:
        if os.environ.get(TRACEBACK_ENV):
            raise
        message = " ".join(str(exc).split("\n", 1)[0].split()) if not _multi_line(exc) else str(exc)
        print(f"{name}: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def _multi_line(exc: BaseException) -> bool:
    """Errors that list several problems (one per line after the first) keep their list."""
    return bool(getattr(exc, "violations", None))
