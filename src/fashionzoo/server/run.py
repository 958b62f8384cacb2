"""Running the app with uvicorn: ``fashionzoo serve``."""

from __future__ import annotations

import errno
import ipaddress
import math
import socket

import uvicorn

from fashionzoo.core.errors import FashionZooError
from fashionzoo.server.app import create_app
from fashionzoo.server.limits import ServerLimits


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def probe_bind(host: str, port: int) -> None:
    """Refuse in one line, before the model loads, an address uvicorn could not listen on: a port in use, a host
    that is not an address of this machine or does not resolve. The probe binds as uvicorn does (``SO_REUSEADDR``)
    and lets go at once."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        raise FashionZooError(
            f"cannot listen on {address}: the host does not resolve ({error}); give --host an address of this "
            "machine (127.0.0.1, the default)"
        ) from None
    family, kind, proto, _, where = found[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(where)
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno == errno.EADDRINUSE:
            fix = "stop what listens there, or pick another --port (--port 0: any free one)"
        elif error.errno == errno.EACCES:
            fix = "ports below 1024 need privileges: pick --port 1024 or above"
        else:
            fix = "give --host an address of this machine (127.0.0.1, the default; 0.0.0.0: all of them)"
        raise FashionZooError(f"cannot listen on {address} ({reason}); {fix}") from None


def serve(host: str, port: int, default_model: str, limits: ServerLimits, log_level: str = "info") -> None:
    """Serve the app on ``host:port`` until interrupted. The address is tried and the default model loaded first, so
    a port in use, a wrong host, a wrong name or a missing file is refused in one line before the port opens. uvicorn
    serves at most ``limits.connections`` connections at once (503 past them)."""
    host = host.strip("[]")
    probe_bind(host, port)
    app = create_app(limits, default_model)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=math.ceil(limits.seconds),
        limit_concurrency=limits.connections,
    )
