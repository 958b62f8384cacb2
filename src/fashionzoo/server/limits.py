"""The bounds of the server: request size, images per request, concurrent work (a bounded queue) and time per
request; a request past one is refused with a status and one line, and the server keeps serving."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from fashionzoo.core.errors import FashionZooError
from fashionzoo.runtime.loading import default_workers

T = TypeVar("T")

RETRY_AFTER = 1
"""Seconds a client refused for load is told to wait (``Retry-After``)."""
EXTRA_CONNECTIONS = 64
"""Connections uvicorn takes beyond the requests in hand (:attr:`ServerLimits.connections`)."""


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask of the server. Image pixels are bounded as ``predict`` bounds them
    (:data:`fashionzoo.photos.decode.MAX_PIXELS`)."""

    max_request_bytes: int = 32 * 1024 * 1024
    """The largest request body (all its images together)."""
    max_files: int = 64
    """The most images in one request."""
    workers: int = field(default_factory=default_workers)
    """Requests classified at once (one thread each)."""
    queue: int = 32
    """Requests waiting for a worker; one more is refused with 503 and ``Retry-After``."""
    seconds: float = 30.0
    """The longest a request may take, reading its images included; past that it is answered 503."""

    @property
    def connections(self) -> int:
        """The connections and requests uvicorn serves at once (its ``limit_concurrency``; past it, 503): the
        requests in hand (``workers + queue``) plus room for light ones (``/healthz``, the page) and for refusals."""
        return self.workers + self.queue + EXTRA_CONNECTIONS

    def __post_init__(self) -> None:
        for name in ("max_request_bytes", "max_files", "workers"):
            if getattr(self, name) < 1:
                raise FashionZooError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        if self.queue < 0:
            raise FashionZooError(f"queue must be 0 or more, not {self.queue!r}")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise FashionZooError(f"seconds must be a positive number, not {self.seconds!r}")


class RequestRefused(Exception):
    """A request the server will not do: its HTTP status, one line saying why and what to do, and headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def busy(message: str) -> RequestRefused:
    """A 503 that tells the client when to try again."""
    return RequestRefused(503, message, {"Retry-After": str(RETRY_AFTER)})


class WorkQueue:
    """Blocking work (decoding, converting, ONNX Runtime) on ``limits.workers`` threads, with at most
    ``limits.queue`` more requests waiting: one past that is refused at once with :func:`busy`. A request takes its
    place (:meth:`slot`) before it reads its body, so at most ``workers + queue`` requests hold uploads in memory
    (each up to ``max_request_bytes``). A request whose caller gives up (its time is over) is dropped if its work has
    not started; work already running finishes and holds its place until then, so the work in hand stays bounded."""

    def __init__(self, limits: ServerLimits) -> None:
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="fashionzoo-serve")
        self.capacity = limits.workers + limits.queue
        self._taken = 0
        self._lock = threading.Lock()

    def slot(self) -> Slot:
        """A place for one request (a context manager), taken now: refused with :func:`busy` when all are taken."""
        with self._lock:
            if self._taken >= self.capacity:
                raise busy(f"the server is busy ({self.capacity} requests in hand); try again in {RETRY_AFTER} s")
            self._taken += 1
        return Slot(self)

    @property
    def taken(self) -> int:
        """Places taken now."""
        with self._lock:
            return self._taken

    def release(self) -> None:
        """Give one place back."""
        with self._lock:
            self._taken -= 1

    def submit(self, func: Callable[[], T]) -> Future[T]:
        """``func()`` on a worker thread; the place it holds is given back when it is done or cancelled."""
        future = self._pool.submit(func)
        future.add_done_callback(lambda _: self.release())
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Slot:
    """A request's place in a :class:`WorkQueue`: given back when the request ends, or, once its work is handed to a
    worker (:meth:`run`), when that work is done or dropped."""

    def __init__(self, work: WorkQueue) -> None:
        self._work = work
        self._held = True

    async def run(self, func: Callable[[], T]) -> T:
        """``func()``'s result, computed on a worker thread (once per slot)."""
        if not self._held:
            raise RuntimeError("a slot runs one piece of work")
        future = self._work.submit(func)
        self._held = False  # the future gives the place back when it is done or cancelled
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            future.cancel()  # not started: dropped (and released); running: it finishes on its own
            raise

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *_: object) -> None:
        if self._held:
            self._held = False
            self._work.release()
