"""Running the app with uvicorn: ``fashionzoo serve``."""

from __future__ import annotations

import ipaddress
import math

import uvicorn

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


def serve(host: str, port: int, default_model: str, limits: ServerLimits, log_level: str = "info") -> None:
    """Serve the app on ``host:port`` until interrupted (the default model loaded first, so a wrong name or a missing
    file is refused before the port opens)."""
    app = create_app(limits, default_model)
    uvicorn.run(
        app, host=host.strip("[]"), port=port, log_level=log_level, timeout_graceful_shutdown=math.ceil(limits.seconds)
    )
