"""Connecting to a Ray cluster and turning its errors into one-line reasons."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fashionzoo.core.errors import FashionZooError, reason

if TYPE_CHECKING:
    pass
import re
import socket
import sys
from typing import TYPE_CHECKING

from fashionzoo.core.errors import REASON_LIMIT

if TYPE_CHECKING:
    pass


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise FashionZooError('--engine ray needs Ray: pip install "fashionzoo[ray]"') from None
    return ray


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[Any]:
    """The ``ray`` module, connected to the cluster at ``address`` (``None``: ``$RAY_ADDRESS``, else a new
    single-machine instance) for the block, and disconnected after it unless it was connected before. The job's
    workers get the driver's ``FASHIONZOO_*`` variables. Meanwhile the notices Ray prints on the driver's stdout
    (a worker died, a task is retried) go to stderr: stdout is for fashionzoo's results (``--json``)."""
    # fashionzoo reports progress and results itself: Ray Data's log lines and Tune's console report off (set
    # before ray.data and ray.tune are imported; the variables override this)
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray = _ray()
    with contextlib.redirect_stdout(sys.stderr):
        connecting = not ray.is_initialized()
        if connecting:
            _check_reachable(address or os.environ.get("RAY_ADDRESS"))
            env = {key: _absolute(key, value) for key, value in os.environ.items() if key.startswith("FASHIONZOO_")}
            try:
                ray.init(
                    address=address,
                    logging_level=logging.WARNING,
                    runtime_env={"env_vars": env},
                    log_to_driver=False,
                    include_dashboard=False if address is None else None,
                )
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise _cannot_connect(address or "a new local instance", error) from None
        try:
            yield ray
        finally:
            if connecting:
                ray.shutdown()  # here, so that late notices go to stderr too


REACH_SECONDS = 5.0
"""How long a cluster's ``host:port`` has to accept a connection: Ray itself retries for about 14 minutes."""


def _check_reachable(address: str | None) -> None:
    """A one-line error at once when a ``host:port`` address accepts no connection (``auto``, ``ray://`` and a new
    local instance are left to Ray, which fails fast on them)."""
    if not address or address == "auto" or is_uri(address) or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_SECONDS):
            pass
    except (OSError, ValueError) as error:
        raise _cannot_connect(address, error) from None


def _cannot_connect(where: str, error: BaseException) -> FashionZooError:
    return FashionZooError(
        f"cannot connect to the Ray cluster at {where} ({reason(error, first_line=True)}); check "
        "--address (ray start --head prints it)"
    )


def _absolute(key: str, value: str) -> str:
    """A ``FASHIONZOO_*`` folder variable made absolute for the job's workers, whose working folder is not the
    driver's (other variables as they are)."""
    folder = key.endswith("_DIR") or key == "FASHIONZOO_HOME"
    return os.path.abspath(os.path.expanduser(value)) if folder and value and not is_uri(value) else value


def remote_reason(error: BaseException) -> str:
    """The exception line of a remote traceback (Ray ends its error texts with its own retry advice), else
    :func:`reason`'s last line."""
    lines = [line.strip() for line in str(error).splitlines()]
    raised = [line for line in lines if _EXCEPTION_LINE.match(line) and not line.startswith("ray.")]
    return raised[-1][:REASON_LIMIT] if raised else reason(error, last_line=True)


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)(\(.*\))?: ")


def is_uri(path: str) -> bool:
    return "://" in path
