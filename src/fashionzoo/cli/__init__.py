"""The ``fashionzoo`` command: each module parses its commands' options, calls one library function and prints."""

from fashionzoo.cli import bench, models, predict, publish, serve, train  # noqa: F401  (each registers its commands)
from fashionzoo.cli.common import main

__all__ = ["main"]
