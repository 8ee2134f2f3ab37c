"""The base of every error that a user can fix: bad params, a missing or unreadable input file, bad data.

Its message says what was wrong, with which key or file, and what to do. The entry points in ``pipelines/``
print such an error as one line and exit non-zero, without a traceback (``pipelines.common.cli``); any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """A problem with the user's params, files or data, explained by the message."""
