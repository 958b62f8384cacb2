"""The benchmark's cache of files converted from weights (``$FASHIONZOO_HOME/bench``: ONNX, int8 ONNX, LiteRT).

A cached file is named after the model, the package version and the weights' SHA-256, and a record beside it
(``<file>.json``) holds the weights' full SHA-256 and the file's own. A file is used only when its record says it
was made from these weights and its bytes still hash to the recorded value; otherwise (replaced by another model's
file, truncated, written before records existed) it is converted again, with a warning. No TensorFlow here."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from fashionzoo.core.files import atomic_open, home_dir, sha256_file
from fashionzoo.core.version import __version__
from fashionzoo.publish import hub
from fashionzoo.registry.entry import ModelEntry

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".json"
"""Appended to a cached file's name for its record."""


def _record_of(target: Path) -> Path:
    return target.with_name(target.name + RECORD_SUFFIX)


def _verified(target: Path, weights_sha256: str) -> bool:
    """Whether ``target`` is the file its record describes, made from the weights with ``weights_sha256``."""
    try:
        record = json.loads(_record_of(target).read_text(encoding="utf-8"))
        return (
            isinstance(record, dict)
            and record.get("weights_sha256") == weights_sha256
            and record.get("sha256") == sha256_file(target)
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def cached_conversion(
    entry: ModelEntry, weights: str | os.PathLike | None, suffix: str, convert: Callable[[Path], object]
) -> Path:
    """The cached file ``suffix`` (``.onnx``, ``.int8.onnx``, ``.tflite``) converted from ``entry``'s weights (the
    released ones unless ``weights`` is a local file): used as it is when verified, else made by ``convert(path)``
    (which writes the file atomically) and recorded."""
    weights_sha256 = hub.weights_sha256(entry, weights)  # fails clearly when there are no weights to convert
    target = home_dir() / "bench" / f"{entry.full_name}-{__version__}-{weights_sha256[:16]}{suffix}"
    if _verified(target, weights_sha256):
        return target
    if target.exists():
        log.warning("%s: not the file its cache record describes (replaced or damaged); converting again", target)
    convert(target)
    with atomic_open(_record_of(target)) as handle:
        json.dump({"weights_sha256": weights_sha256, "sha256": sha256_file(target)}, handle)
        handle.write("\n")
    return target
