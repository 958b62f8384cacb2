"""``serve``."""

from __future__ import annotations

import click

from fashionzoo.cli.common import FiniteFloatRange, address_option, engine_option, main, user_errors
from fashionzoo.core.errors import FashionZooError

SERVER_PACKAGES = ("fastapi", "starlette", "uvicorn", "python_multipart", "pydantic", "anyio")
"""The ``serve`` extra's packages and theirs that the server imports."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (other than loopback: warned).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free one).")
@click.option("--model", "name", help="The model for requests that name none (default: the zoo's default model).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Requests classified at once (default: one per CPU core; with --engine ray, one per replica).",
)
@click.option(
    "--queue",
    type=click.IntRange(min=0),
    default=32,
    show_default=True,
    help="Requests waiting beyond those; one more gets 503 with Retry-After.",
)
@click.option(
    "--max-request-mb",
    type=FiniteFloatRange(min=0, min_open=True),
    default=32.0,
    show_default=True,
    help="Largest request body, all its images together.",
)
@click.option("--max-files", type=click.IntRange(min=1), default=64, show_default=True, help="Most images a request.")
@click.option(
    "--timeout",
    "seconds",
    type=FiniteFloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Longest a request may take; past it, 503.",
)
@engine_option
@address_option
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    help="--engine ray: replicas of the app, one CPU each, spread over the cluster's nodes (default: 1).",
)
@user_errors
def serve(
    host: str,
    port: int,
    name: str | None,
    workers: int | None,
    queue: int,
    max_request_mb: float,
    max_files: int,
    seconds: float,
    engine: str,
    address: str | None,
    replicas: int | None,
) -> None:
    """Serve the zoo over HTTP: a JSON API (POST /v1/predict, GET /v1/models, GET /healthz, OpenAPI at /docs) and a
    page for people at /. ONNX Runtime only (docs/serving.md). With --engine ray: the same app as a Ray Serve
    deployment of --replicas replicas on a Ray cluster (docs/scale-out.md)."""
    from fashionzoo.registry.catalogue import DEFAULT_MODEL
    from fashionzoo.runtime.loading import default_workers

    try:
        from fashionzoo.server.limits import ServerLimits
        from fashionzoo.server.run import is_loopback
        from fashionzoo.server.run import serve as run_server
    except ModuleNotFoundError as error:
        if error.name not in SERVER_PACKAGES:
            raise
        raise FashionZooError(f'fashionzoo serve needs {error.name}: pip install "fashionzoo[serve]"') from None

    if engine != "ray" and (address or replicas):
        raise FashionZooError("--address and --replicas are for --engine ray")
    if not is_loopback(host):
        click.echo(
            f"fashionzoo: warning: serving on {host}, reachable from other machines; the server has no "
            "authentication or TLS (put a proxy in front, or keep the default 127.0.0.1)",
            err=True,
        )
    max_request_bytes = int(max_request_mb * 1024 * 1024)
    if max_request_bytes < 1:
        raise FashionZooError(
            f"--max-request-mb {max_request_mb:g} is under one byte; give at least {1 / (1024 * 1024):.2g} (MB)"
        )
    limits = ServerLimits(
        max_request_bytes=max_request_bytes,
        max_files=max_files,
        workers=workers or (1 if engine == "ray" else default_workers()),
        queue=queue,
        seconds=seconds,
    )
    if engine == "ray":
        from fashionzoo.distributed.serve import serve_on_ray

        serve_on_ray(host, port, name or DEFAULT_MODEL, limits, replicas or 1, address, _announce)
        return
    run_server(host, port, name or DEFAULT_MODEL, limits)


def _announce(line: str) -> None:
    click.echo(f"fashionzoo: {line}; Ctrl-C stops it", err=True)
