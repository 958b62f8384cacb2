"""Glob patterns expanded with each real folder walked once, so symbolic link loops cannot multiply the paths.

Python's ``glob`` follows every symlinked folder under ``**``: two ``..`` links in one folder double the paths at
each level, and ``predict "dir/**/*.png"`` ran for ever. :func:`expand_glob` keeps glob's rules (``*``, ``?`` and
``[...]`` within one name, ``**`` for any number of folders, hidden names matched only by a pattern starting with
a dot) but under ``**`` enters each real folder (device and inode) at most once and reports a link that leads back
to a folder above it, instead of following it.
"""

from __future__ import annotations

import fnmatch
import glob
import os


def _key(path: str) -> tuple[int, int] | None:
    """The real folder behind ``path`` (links followed), or None if it is not a readable folder."""
    try:
        info = os.stat(path or ".")
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if os.path.isdir(path or ".") else None


def _names(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder or "."))
    except OSError:
        return []


class _Walk:
    """One expansion: the matches, the loop reports and the real folders ``**`` has entered."""

    def __init__(self) -> None:
        self.matches: set[str] = set()
        self.loops: list[str] = []  # symlinks that lead back to a folder above them
        self.entered: set[tuple[int, int]] = set()

    def match(self, base: str, parts: list[str], above: tuple[tuple[int, int], ...]) -> None:
        if not parts:
            if base and os.path.lexists(base):
                self.matches.add(base)
            return
        head, rest = parts[0], parts[1:]
        if head == "**":
            self.match(base, rest, above)  # no folder at all
            for name in _names(base):
                if not name.startswith("."):
                    if not rest:  # a trailing "**" matches files too
                        self.matches.add(os.path.join(base, name))
                    self.descend(os.path.join(base, name), parts, above)
        elif glob.has_magic(head):
            for name in _names(base):
                if fnmatch.fnmatchcase(name, head) and (head.startswith(".") or not name.startswith(".")):
                    self.match(os.path.join(base, name), rest, above)
        else:
            self.match(os.path.join(base, head) if base or head else os.sep, rest, above)

    def descend(self, folder: str, parts: list[str], above: tuple[tuple[int, int], ...]) -> None:
        """Continue ``**`` in ``folder``: once per real folder; a link back to a folder above is reported."""
        key = _key(folder)
        if key is None:
            return
        if key in above:
            self.loops.append(folder)
        elif key not in self.entered:
            self.entered.add(key)
            self.match(folder, parts, (*above, key))


def expand_glob(pattern: str) -> tuple[list[str], list[str]]:
    """The sorted paths matching ``pattern``, and the symbolic links met that loop back to a folder above them
    (not followed)."""
    walk = _Walk()
    parts = pattern.split(os.sep)
    literal = 0
    while literal < len(parts) - 1 and not glob.has_magic(parts[literal]):
        literal += 1
    base = os.sep.join(parts[:literal]) or (os.sep if pattern.startswith(os.sep) else "")
    root = _key(base)
    walk.match(base, parts[literal:], (root,) if root else ())
    return sorted(walk.matches), walk.loops
