"""``fashionzoo serve --engine ray``: the server's own app (:func:`fashionzoo.server.app.create_app`) as a Ray Serve
deployment, its replicas spread over the cluster's nodes behind Ray Serve's HTTP proxy on the head node
(docs/scale-out.md)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from fashionzoo.core.errors import FashionZooError
from fashionzoo.distributed.cluster import connected
from fashionzoo.server.app import create_app, servable_entry
from fashionzoo.server.limits import RETRY_AFTER, ServerLimits

APPLICATION = "fashionzoo"
"""The Serve application's name on the cluster."""


class ZooReplica:
    """One replica: the app ``fashionzoo serve`` runs, built in the replica's own process (its classifiers and its
    bounded queue are the replica's)."""

    def __init__(self, limits: ServerLimits, default_model: str) -> None:
        self.limits = limits
        self.default_model = default_model

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.limits, self.default_model)


def _serve() -> Any:
    try:
        from ray import serve
    except ImportError:
        raise FashionZooError('--engine ray needs Ray Serve: pip install "fashionzoo[ray]"') from None
    return serve


def serve_on_ray(
    host: str,
    port: int,
    default_model: str,
    limits: ServerLimits,
    replicas: int,
    address: str | None,
    announce: Callable[[str], None],
) -> None:
    """Deploy ``replicas`` replicas of the app on the Ray cluster at ``address`` (one CPU each; each with its own
    ``limits``), with Ray Serve's HTTP proxy on the head node at ``host:port``; ``announce`` the address once they
    are ready, then serve until SIGTERM or Ctrl-C, and take the application and Serve down again."""
    entry = servable_entry(default_model)  # a wrong name is refused before connecting
    serve = _serve()
    with connected(address) as ray:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        try:
            serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": port})
            deployment = serve.deployment(
                serve.ingress()(ZooReplica),
                name="ZooReplica",
                num_replicas=replicas,
                ray_actor_options={"num_cpus": 1},
                max_ongoing_requests=limits.workers + limits.queue,
                max_queued_requests=limits.queue,
                backpressure_config={"status_code": 503, "retry_after_s": RETRY_AFTER},
            )
            serve.run(deployment.bind(limits, entry.full_name), name=APPLICATION, route_prefix="/")
            nodes = sum(node["Alive"] for node in ray.nodes())
            announce(
                f"serving {entry.full_name} on http://{host}:{port} with Ray Serve: {replicas} "
                f"replica{'s' if replicas != 1 else ''} on a cluster of {nodes} node{'s' if nodes != 1 else ''}"
            )
            stop.wait()
        finally:
            serve.shutdown()
