"""Connecting to a Ray cluster (or starting the zoo's own instance on 127.0.0.1), Ray's logging kept quiet, and its
errors as one line."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from fashionzoo.core.errors import REASON_LIMIT, FashionZooError, reason

RAY_LOG_LEVEL_VARIABLE = "FASHIONZOO_RAY_LOG_LEVEL"
"""Set to a level (``warning``, ``info``, ``debug``) to see Ray's own log lines and the workers' output; unset, Ray
says nothing and fashionzoo's one-line notices and errors are all there is."""

REACH_SECONDS = 5.0
"""How long a cluster's ``host:port`` has to accept a connection and answer as a gRPC server: Ray itself retries
for about 14 minutes, and forever when the port is not Ray's."""

LOCAL_INSTANCE_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
"""The zoo's own instance: Ray's single-machine mode (read when Ray is imported), in which 127.0.0.1 stays 127.0.0.1
rather than becoming the machine's network address, and no usage report."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise FashionZooError('--engine ray needs Ray: pip install "fashionzoo[ray]"') from None
    return ray


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[Any]:
    """The ``ray`` module, connected for the block and disconnected after it (unless it was connected before).

    ``address``: a cluster (``host:port``, ``ray://head:10001``, ``auto``); ``None``: ``$RAY_ADDRESS``, else (and for
    ``local``) the zoo's own instance, started for the block and ended after it: bound to 127.0.0.1 (GCS, raylet,
    object manager; no dashboard), in a temporary folder of its own, with token authentication by a token of its
    own that only its processes' environment holds (nothing written to ``~/.ray``). A ``host:port`` must accept a
    connection and answer as a gRPC server within :data:`REACH_SECONDS`, else one line at once. The job's workers
    get the driver's ``FASHIONZOO_*`` variables. Ray's own log lines are off unless :data:`RAY_LOG_LEVEL_VARIABLE`
    asks for them (then what Ray prints on the driver's stdout goes to stderr: stdout is for results, ``--json``)."""
    target = address or os.environ.get("RAY_ADDRESS") or None
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        yield sys.modules["ray"]
        return
    local = target in (None, "local")
    check_address(target)
    level = _log_level()
    with contextlib.ExitStack() as stack:
        if level == logging.CRITICAL:  # Ray's notices (a task retried, a worker died) too: fashionzoo reports
            stack.enter_context(_native_stderr_silenced())
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        else:
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        stack.enter_context(_environment(_logging_env(level)))
        options = _own_instance(stack) if local else {"address": target}
        ray = _ray()
        env = {key: _absolute(key, value) for key, value in os.environ.items() if key.startswith("FASHIONZOO_")}
        try:
            ray.init(
                **options,
                logging_level=level,
                runtime_env={"env_vars": env},
                log_to_driver=level < logging.CRITICAL,
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise _cannot_connect("a new local instance" if local else str(target), error) from None
        try:
            yield ray
        finally:
            ray.shutdown()  # inside the block: late notices are redirected too, and the instance's folder outlives it


def _own_instance(stack: contextlib.ExitStack) -> dict[str, Any]:
    """``ray.init``'s options for the zoo's own instance; its temporary folder and its environment (single-machine
    mode, a token made for it) are entered on ``stack``, to be removed and restored when the block ends."""
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="fzray-", dir=_temp_root()))
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    stack.enter_context(_environment({**LOCAL_INSTANCE_ENV, **token}, replace=True))
    return {"address": "local", "_node_ip_address": "127.0.0.1", "include_dashboard": False, "_temp_dir": folder}


def _log_level() -> int:
    """The level of Ray's own logging: :data:`RAY_LOG_LEVEL_VARIABLE`'s, else none (``CRITICAL``)."""
    asked = os.environ.get(RAY_LOG_LEVEL_VARIABLE, "").strip().upper()
    if not asked:
        return logging.CRITICAL
    level = logging.getLevelName(asked)
    if not isinstance(level, int):
        raise FashionZooError(
            f"${RAY_LOG_LEVEL_VARIABLE}={asked.lower()} is not a log level; use debug, info, warning or error"
        )
    return level


def _logging_env(level: int) -> dict[str, str]:
    """Ray's logging variables for ``level`` (those the user set win): Ray Data, Tune's console, and when asked
    its C++ core (setting that one prints a line of its own)."""
    wanted = {"RAY_DATA_LOG_LEVEL": logging.getLevelName(level), "RAY_AIR_NEW_OUTPUT": "0"}
    if level < logging.CRITICAL:
        wanted["RAY_BACKEND_LOG_LEVEL"] = logging.getLevelName(level).lower()
    return {key: os.environ.get(key, value) for key, value in wanted.items()}


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 pointed at the null device for the block, where Ray's C++ core writes its log lines
    whatever its level; ``sys.stderr`` (fashionzoo's notices and errors) writes to the real stderr through a copy of
    the descriptor meanwhile."""
    sys.stderr.flush()
    saved, stderr = os.dup(2), sys.stderr
    try:
        with open(saved, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False) as copy:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                if stderr.fileno() == 2:  # not under a test runner's capture
                    sys.stderr = copy
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
            yield
    finally:
        sys.stderr = stderr
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _environment(values: dict[str, str], replace: bool = False) -> Iterator[None]:
    """``os.environ`` with ``values`` for the block (Ray's processes inherit it), restored after it. Without
    ``replace`` a variable already set keeps its value."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update({key: value for key, value in values.items() if replace or before[key] is None})
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _temp_root() -> str:
    """Where the zoo's own instance keeps its session: ``$RAY_TMPDIR`` (Ray's own choice), else the system's
    temporary folder."""
    return os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
"""An HTTP/2 client's connection preface and an empty SETTINGS frame: a gRPC server (Ray's GCS) answers with a
SETTINGS frame of its own (RFC 9113, section 3.4)."""


def check_address(address: str | None) -> None:
    """A one-line error within :data:`REACH_SECONDS` when a ``host:port`` address accepts no connection, or accepts
    one but does not answer as a gRPC server (the GCS, Ray's head, is one; with ``RAY_USE_TLS`` only the connection
    is checked). ``auto``, ``ray://`` and a new local instance are left to Ray, which fails fast on them."""
    if not address or address == "auto" or is_uri(address) or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + REACH_SECONDS  # one bound for the connection, the preface and every read
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_SECONDS) as peer:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("0", "false", ""):
                _check_grpc(peer, address, deadline)
    except (OSError, ValueError) as error:
        raise _cannot_connect(address, error) from None


def _check_grpc(peer: socket.socket, address: str, deadline: float) -> None:
    """Raises unless ``peer`` answers :data:`HTTP2_PREFACE` with a SETTINGS frame header (type 4, stream 0) by
    ``deadline`` (``time.monotonic()``): a peer that sends a byte at a time stops being waited for then, however
    many reads that leaves short."""
    peer.settimeout(max(deadline - time.monotonic(), 0.001))
    peer.sendall(HTTP2_PREFACE)
    header = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        while len(header) < 9 and (left := deadline - time.monotonic()) > 0:
            peer.settimeout(left)
            if not (chunk := peer.recv(9 - len(header))):
                break
            header += chunk
    if len(header) < 9 or header[3] != 4 or int.from_bytes(header[5:9], "big") & 0x7FFFFFFF:
        raise FashionZooError(
            f"{address} is not a Ray cluster: it accepts connections but does not answer as Ray's GCS (a gRPC "
            f"server) does; check --address (ray start --head prints it)"
        )


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
