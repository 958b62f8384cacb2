"""The one error type of the zoo and how an exception becomes a one-line reason."""

from __future__ import annotations

import os


class FashionZooError(Exception):
    """An error with a one-line message meant for the user (the CLI prints it without a traceback)."""


REASON_LIMIT = 200
"""Most characters of a library's error message quoted in one of ours."""


def os_reason(error: OSError) -> str:
    """The system's own words for an OS error (``No space left on device``), from its number alone: some libraries
    (HDF5) put a multi-line report in ``strerror``."""
    return os.strerror(error.errno) if error.errno is not None else reason(error)


def reason(error: BaseException, first_line: bool = False, last_line: bool = False) -> str:
    """The quotable part of a third-party error: whitespace folded to one line (or its first line only, or its last:
    the exception line that ends a remote traceback), at most :data:`REASON_LIMIT` characters, the exception type
    when it says nothing."""
    lines = str(error).strip().splitlines()
    text = lines[0 if first_line else -1] if lines and (first_line or last_line) else " ".join(" ".join(lines).split())
    return text[:REASON_LIMIT] or type(error).__name__
