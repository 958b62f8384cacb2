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
from collections.abc import Iterable, Iterator
from pathlib import Path

from fashionzoo.core.errors import os_reason
from fashionzoo.runtime.results import Failure


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


Above = tuple[tuple[int, int], ...]
"""The real folders ``**`` passed through to reach a folder (links followed), to tell a link that loops back."""


class _Walk:
    """One expansion: the matches, the loop reports and the real folders ``**`` has entered. The walk keeps its own
    stack of steps, in the order a recursive walk would take them, so a tree of any depth expands (a recursive walk
    stopped with RecursionError 500 folders down)."""

    def __init__(self) -> None:
        self.matches: set[str] = set()
        self.loops: list[str] = []  # symlinks that lead back to a folder above them
        self.entered: set[tuple[int, int]] = set()

    def run(self, base: str, parts: list[str], above: Above) -> None:
        steps: list[tuple[bool, str, list[str], Above]] = [(False, base, parts, above)]
        while steps:
            descend, base, parts, above = steps.pop()
            ahead = self._descend(base, parts, above) if descend else self._match(base, parts, above)
            steps.extend(reversed(ahead))  # the first step ahead is taken first

    def _match(self, base: str, parts: list[str], above: Above) -> list[tuple[bool, str, list[str], Above]]:
        """The steps that match ``parts`` under ``base``."""
        if not parts:
            if base and os.path.lexists(base):
                self.matches.add(base)
            return []
        head, rest = parts[0], parts[1:]
        if head == "**":
            ahead = [(False, base, rest, above)]  # no folder at all
            for name in _names(base):
                if not name.startswith("."):
                    if not rest:  # a trailing "**" matches files too
                        self.matches.add(os.path.join(base, name))
                    ahead.append((True, os.path.join(base, name), parts, above))
            return ahead
        if glob.has_magic(head):
            return [
                (False, os.path.join(base, name), rest, above)
                for name in _names(base)
                if fnmatch.fnmatchcase(name, head) and (head.startswith(".") or not name.startswith("."))
            ]
        return [(False, os.path.join(base, head) if base or head else os.sep, rest, above)]

    def _descend(self, folder: str, parts: list[str], above: Above) -> list[tuple[bool, str, list[str], Above]]:
        """Continue ``**`` in ``folder``: once per real folder; a link back to a folder above is reported."""
        key = _key(folder)
        if key is None:
            return []
        if key in above:
            self.loops.append(folder)
        elif key not in self.entered:
            self.entered.add(key)
            return [(False, folder, parts, (*above, key))]
        return []


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
    walk.run(base, parts[literal:], (root,) if root else ())
    return sorted(walk.matches), walk.loops


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
"""File endings picked up when a folder is expanded (case-insensitive)."""


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink looping on itself: reported by the file's own failure, not the folder's
        return False


def _image_files(folder: Path, recursive: bool = False) -> list[str] | Failure:
    try:
        names = _walk(folder, recursive)
    except PermissionError as error:
        return Failure(str(folder), f"{error.filename or folder}: permission denied (cannot list the folder)")
    except OSError as error:
        return Failure(str(folder), f"{error.filename or folder}: cannot list the folder ({error.strerror or error})")
    if not names:
        where = "this folder or its subfolders" if recursive else "this folder"
        hint = "" if recursive or not _has_subfolders(folder) else "; it has subfolders (--recursive looks in them)"
        return Failure(str(folder), f"{folder}: no image files in {where} ({', '.join(IMAGE_EXTENSIONS)}){hint}")
    return names


def _has_subfolders(folder: Path) -> bool:
    """Whether ``folder`` holds a real subfolder (one that a recursive walk would enter)."""
    with os.scandir(folder) as entries:
        return any(entry.is_dir(follow_symlinks=False) for entry in entries)


def _walk(folder: Path, recursive: bool) -> list[str]:
    """Image files in name order; with ``recursive``, a subfolder's files take its name's place (symlinked folders
    are not followed, so a link loop cannot recurse forever; a stack of folders, not recursion, so any depth)."""
    found: list[str] = []
    stack = [iter(_sorted_entries(folder))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
        elif entry.is_dir(follow_symlinks=False):
            if recursive:
                stack.append(iter(_sorted_entries(entry.path)))
        elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and not _is_dir(entry):
            found.append(entry.path)
    return found


def _sorted_entries(folder: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return sorted(entries, key=lambda e: e.name)


def expand_inputs(inputs: Iterable[str | os.PathLike], recursive: bool = False) -> Iterator[str | Failure]:
    """Image files named by command-line inputs, in order: files as given, folders as their image files (sorted;
    with ``recursive``, subfolders' too), glob patterns as their sorted matches (:func:`~fashionzoo.runtime.inputs.
    expand_glob`: each real folder once); what cannot be expanded, an empty input or a symlink loop yields a
    Failure."""
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        try:
            is_folder = path.is_dir()
        except OSError as error:  # e.g. a name too long for the system: that input fails, the others go on
            yield Failure(text, f"{text}: cannot read it ({os_reason(error)}); check the path")
            continue
        if not text:
            yield Failure(text, "'': an empty path (an unset variable?); name image files, folders or patterns")
        elif is_folder:
            found = _image_files(path, recursive)
            yield from ([found] if isinstance(found, Failure) else found)
        elif not path.exists() and glob.has_magic(text):
            matches, loops = expand_glob(text)
            for link in loops:
                yield Failure(link, f"{link}: symbolic link loop (it leads back to a folder above it); not followed")
            if matches:
                yield from expand_inputs(matches, recursive)
            elif not loops:
                yield Failure(text, f"{text}: no file matches this pattern")
        else:
            yield text
