"""Which device a ``--device`` request gets: the one rule shared by ONNX Runtime, training and the benchmark."""

from __future__ import annotations

import logging

from fashionzoo.core.errors import FashionZooError

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda", "auto")


def choose(device: str, cuda_available: bool, who: str, install: str) -> str:
    """``"cuda"`` or ``"cpu"`` for a requested ``cpu``, ``cuda`` or ``auto``: ``auto`` takes CUDA when ``who`` (the
    framework) has it; ``cuda`` without it falls back to the CPU with one warning naming what to ``install``."""
    if device not in DEVICES:
        raise FashionZooError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device != "cpu" and cuda_available:
        return "cuda"
    if device == "cuda":
        log.warning("--device cuda asked, but %s has no CUDA device (%s); using the CPU", who, install)
    return "cpu"


def keras_device(device: str) -> str:
    """TensorFlow's device string for a ``cpu``/``cuda``/``auto`` request (imports TensorFlow: for its callers)."""
    import tensorflow as tf

    gpus = bool(tf.config.list_physical_devices("GPU"))
    return "/GPU:0" if choose(device, gpus, "TensorFlow", "pip install 'fashionzoo[cuda]'") == "cuda" else "/CPU:0"
