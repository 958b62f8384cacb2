"""The installed version of fashionzoo, from one source: pyproject.toml through the package metadata."""

from importlib import metadata

try:
    __version__ = metadata.version("fashionzoo")
except metadata.PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"
