"""Reading and converting image files ahead of the model, in threads or forked processes."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from fashionzoo.core.errors import FashionZooError
from fashionzoo.photos.convert import ImageBytes, forkable, read_photo
from fashionzoo.runtime.results import Failure

Item = str | os.PathLike | ImageBytes | Failure
"""What can be classified: an image file's path, an image file held in memory, or a Failure passed through."""
Loaded = tuple[str, np.ndarray, str | None, int]
"""A loaded file: its name, its 28x28 pixels, the photo's scene (None for an image in the data set's format) and
the separate garments found in it (see :func:`read_photo`)."""


def _load(item: Item, pipeline: str) -> Loaded | Failure:
    """A file after ``pipeline`` (see :func:`read_photo`), or the one-line reason it cannot be used (a Failure
    passes through)."""
    if isinstance(item, Failure):
        return item
    name = _file_name(item)
    if name is None:
        return Failure(repr(item), f"{item!r}: not a file name")
    try:
        pixels, scene, garments = read_photo(item if isinstance(item, ImageBytes) else name, pipeline)
        if pixels.min() == pixels.max():
            return Failure(name, f"{name}: a blank image (one flat colour once converted): nothing to classify")
        return name, pixels, scene, garments
    except FashionZooError as error:
        return Failure(name, str(error))
    except (OSError, ValueError, MemoryError) as error:
        return Failure(name, f"{name}: could not convert the image ({type(error).__name__}: {error})")


def default_workers() -> int:
    """Workers that decode and preprocess files: one per CPU core available to this process."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_PROCESSES_FROM = 256
"""From this many files on, they are loaded in worker processes rather than threads: preprocessing holds the GIL
for much of each photo (many small numpy steps), and processes loaded about twice as fast as threads. Forking costs
little, but a few files gain little, so up to one batch stays on threads (measured: docs/photos.md)."""
_CHUNK = 16
"""Files handed to a worker process at a time (one pickled round trip each)."""
_FORK = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
"""Worker processes are forked (where the system can): a spawned process imports the caller's main module again,
which runs a script without an ``if __name__ == "__main__"`` guard a second time. The workers only decode and
preprocess (Pillow, numpy, OpenCV), never touching the parent's onnxruntime session."""


def _load_chunk(items: list[Item], pipeline: str) -> list[Loaded | Failure]:
    return [_load(item, pipeline) for item in items]


def _start_loader(parent: int) -> None:
    """A loading process yields to the model: it runs at a lower priority (``nice`` 10), so that ONNX Runtime's
    threads, which wait for one another at every operator, are not descheduled mid-operator (faster end to end,
    measured on the development photos: docs/photos.md). Ctrl-C is the parent's to handle: the process ignores it
    rather than print a traceback. On Linux it ends with its ``parent``: a parent killed by SIGTERM or SIGKILL left
    its loading processes blocked on their pipes forever. They run OpenCV on one thread: the parent forks them
    inside :func:`forkable`."""
    os.nice(10)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no prctl
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request was made
            os._exit(1)


_PR_SET_PDEATHSIG = 1
"""Linux's prctl option: the signal a process gets when its parent dies."""


def _lost(item: Item) -> Failure:
    """The failure of a file that was queued for a loading process that died."""
    if isinstance(item, Failure):
        return item
    name = _file_name(item)
    name = repr(item) if name is None else name
    return Failure(name, f"{name}: the process loading it died (out of memory?); classify it again, alone")


def _file_name(item: Any) -> str | None:
    """``item`` as a file name (``str``, ``bytes``, path-like or an :class:`ImageBytes`' name), or None for anything
    else."""
    if isinstance(item, ImageBytes):
        return item.name
    try:
        return os.fsdecode(item)
    except TypeError:
        return None


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def load_all(items: Iterable[Item], workers: int, ahead: int, pipeline: str) -> Iterator[Loaded | Failure]:
    """:func:`_load` over ``items`` in input order, on ``workers`` threads or processes (from
    :data:`_PROCESSES_FROM` files on), at most about ``ahead`` files in flight (so that the workers keep loading
    the next batch while the model runs on this one)."""
    if workers <= 1:
        yield from map(functools.partial(_load, pipeline=pipeline), items)
        return
    items = iter(items)
    first = list(itertools.islice(items, _PROCESSES_FROM))
    threads = len(first) < _PROCESSES_FROM or _FORK is None
    chunk = 1 if threads else _CHUNK

    def start() -> Executor:
        if threads:
            return ThreadPoolExecutor(workers, thread_name_prefix="fashionzoo-load")
        with forkable():  # a pool of forked processes forks them all at its first task: one now, a no-op
            processes = ProcessPoolExecutor(
                workers, mp_context=_FORK, initializer=_start_loader, initargs=(os.getpid(),)
            )
            processes.submit(int)
        return processes

    pool = start()
    pending: deque[tuple[list[Any], Future]] = deque()

    def next_results() -> list[Loaded | Failure]:
        nonlocal pool
        group, future = pending.popleft()
        try:
            return future.result()
        except BrokenProcessPool:  # a loading process died (out of memory?): its files and those queued fail
            lost = [group, *(queued for queued, _ in pending)]
            pending.clear()
            pool.shutdown(wait=False, cancel_futures=True)
            pool = start()
            return [_lost(item) for queued in lost for item in queued]

    try:
        for group in _chunks(itertools.chain(first, items), chunk):
            pending.append((group, pool.submit(_load_chunk, group, pipeline)))
            if len(pending) * chunk >= ahead:
                yield from next_results()
        while pending:
            yield from next_results()
    finally:  # also when the caller stops early or Ctrl-C: files not started are dropped, not loaded first
        pool.shutdown(wait=True, cancel_futures=True)
