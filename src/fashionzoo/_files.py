"""Small file helpers shared by every module: atomic writes, hashing, the cache folder."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import platformdirs

_UMASK = os.umask(0)
os.umask(_UMASK)


class FashionZooError(Exception):
    """An error with a one-line message meant for the user (the CLI prints it without a traceback)."""


REASON_LIMIT = 200
"""Most characters of a library's error message quoted in one of ours."""


def reason(error: BaseException, first_line: bool = False) -> str:
    """The quotable part of a third-party error: whitespace folded to one line (or its first line only), at most
    :data:`REASON_LIMIT` characters, the exception type when it says nothing."""
    text = str(error)
    text = text.splitlines()[0] if first_line and text else " ".join(text.split())
    return text[:REASON_LIMIT] or type(error).__name__


def home_dir() -> Path:
    """The package's cache folder: ``$FASHIONZOO_HOME`` or the user's cache directory."""
    return Path(os.environ.get("FASHIONZOO_HOME") or platformdirs.user_cache_dir("fashionzoo"))


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    Nothing is left under the final name when the block raises (a full disk, a failed check):
    the temporary file is removed and the error propagates. ``suffix`` keeps writers that check the
    file extension (Keras' ``.weights.h5``, ONNX) happy.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; the final file gets the usual permissions
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``target`` atomically when closed cleanly."""
    with atomic_path(target) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
