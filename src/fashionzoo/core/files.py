"""Small file helpers shared by every module: atomic writes, hashing, the cache folder."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import platformdirs

from fashionzoo.core.errors import FashionZooError, os_reason

_UMASK = os.umask(0)
os.umask(_UMASK)


def home_dir() -> Path:
    """The package's cache folder: ``$FASHIONZOO_HOME`` or the user's cache directory; refused in one line when it
    names something that is not a folder."""
    given = os.environ.get("FASHIONZOO_HOME")
    home = Path(given or platformdirs.user_cache_dir("fashionzoo")).expanduser().absolute()
    if os.path.exists(home) and not os.path.isdir(home):  # os.path: an unreadable path is no error here
        source = "$FASHIONZOO_HOME" if given else "the cache folder"
        raise FashionZooError(f"{home}: {source} is not a folder; point FASHIONZOO_HOME at a folder, or unset it")
    return home


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file (any ``hashlib`` algorithm), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    return file_digest(path)


DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
"""Errors that mean "this disk cannot take the file" (full, over quota, file too large, read-only)."""


class DiskError(FashionZooError):
    """A write refused by the disk (one of :data:`DISK_ERRNOS`): one line naming the file."""

    def __init__(self, target: str | os.PathLike, error: OSError) -> None:
        reason = os_reason(error)  # not ``strerror``: HDF5 puts a multi-line report there
        super().__init__(f"{target}: could not write it ({reason}); free some space or write somewhere else")


def check_writable_target(target: Path) -> None:
    """Refuse to replace anything but a regular file: a symlink (its target would be replaced, or the link
    itself), a device, a fifo, a socket or a folder. A missing target is fine; a path that cannot name a file (a
    part of it is a file or a link loop, or it is too long) is refused in one line."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise FashionZooError(
            f"{target}: cannot write there ({os_reason(error)}); name a file in a folder you can write to"
        ) from None
    if stat.S_ISLNK(mode):
        raise FashionZooError(
            f"{target}: is a symbolic link; name a regular file or a new path (links are never "
            "written through or replaced)"
        )
    if not stat.S_ISREG(mode):
        raise FashionZooError(
            f"{target}: exists and is not a regular file (a device, fifo, socket or folder); name a "
            "regular file or a new path"
        )


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def existing_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` (``~`` expanded) when it names a regular file or a link to one; else a one-line refusal saying what
    it is: missing, a broken link, a folder, a named pipe, a device or a socket. It is never opened: reading a named
    pipe blocks until something writes to it."""
    file = Path(path).expanduser()
    try:
        mode = os.stat(file).st_mode
    except FileNotFoundError:
        missing = "a broken symbolic link" if os.path.islink(file) else "no such file"
        raise FashionZooError(f"{file}: {missing} (pass the path of {what})") from None
    except OSError as error:
        raise FashionZooError(f"{file}: cannot read it ({os_reason(error)}); pass the path of {what}") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "a device")
        raise FashionZooError(f"{file}: is {kind}, not a regular file; pass the path of {what}")
    return file


def check_can_write(target: Path) -> None:
    """:func:`check_writable_target`, and that a file can be created in its folder (made if missing): for commands
    that write their result after minutes of work."""
    check_writable_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=_temporary_prefix(target), dir=target.parent):
            pass
    except OSError as error:
        raise _cannot_create(target, error) from None


def _cannot_create(target: Path, error: OSError) -> FashionZooError:
    return FashionZooError(
        f"{target}: cannot create a file in {target.parent} ({error.strerror}); write somewhere else"
    )


def _temporary_prefix(target: Path) -> str:
    """Temporary files are ``.NAME.PID.RANDOMSUFFIX``: :func:`remove_stale_temporaries` finds those of dead writers."""
    return f".{target.name}.{os.getpid()}."


_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}(?P<suffix>\..+)?")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: Path, name: str | None = None) -> list[Path]:
    """Delete the :func:`atomic_path` temporary files in ``folder`` (only those for the file ``name``, when given)
    whose writing process has died (killed before it could clean up); returns them. Files of live processes (or of a
    pid now reused) are kept."""
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            found = _TEMPORARY.fullmatch(entry.name)
            if not found or (name is not None and found["name"] != name):
                continue
            if entry.is_file(follow_symlinks=False) and not _alive(int(found["pid"])):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    Nothing is left under the final name when the block raises (a full disk, a failed check):
    the temporary file is removed and the error propagates; a full or read-only disk becomes a one-line
    :class:`FashionZooError`. ``target`` must be a regular file or new (:func:`check_writable_target`).
    ``suffix`` keeps writers that check the file extension (Keras' ``.weights.h5``, ONNX) happy.
    """
    target = Path(target)
    check_writable_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(target), suffix=suffix, dir=target.parent)
    except OSError as error:
        raise _cannot_create(target, error) from None
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; the final file gets the usual permissions
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        check_writable_target(target)  # nothing put a link or a device there meanwhile
        os.replace(tmp, target)
    except BaseException as error:
        # Emptied first: a writer that still holds the file open (HDF5 after a failed write) can then close it
        # without needing space; left full, HDF5 retried its flush at exit and crashed the process.
        with contextlib.suppress(OSError):
            os.truncate(tmp, 0)
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
            raise DiskError(target, error) from None
        raise


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``target`` atomically when closed cleanly."""
    with atomic_path(target) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
