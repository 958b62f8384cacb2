"""LiteRT (TensorFlow Lite) files of the zoo's models, for the benchmark's LiteRT peer: converted from the Keras
model with TensorFlow's TFLite converter (fp32, no optimisation flags) and checked against Keras on the test set
like the ONNX export before they are used. Running them needs ``ai-edge-litert`` (``pip install
"fashionzoo[bench]"``); converting needs only TensorFlow. Imports TensorFlow: import lazily."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fashionzoo.bench.cache import cached_conversion
from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.core.files import atomic_path
from fashionzoo.models import loading
from fashionzoo.publish.export import PARITY_BATCH, PARITY_TOLERANCE, check_parity
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import resolve

INSTALL_HINT = 'pip install "fashionzoo[bench]"'


def interpreter_class() -> Any:
    """LiteRT's ``Interpreter``, or a FashionZooError saying how to install it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise FashionZooError(f"LiteRT is not installed (ai-edge-litert); {INSTALL_HINT}") from None
    return Interpreter


class LiteRTModel:
    """A ``.tflite`` model in a LiteRT interpreter with ``threads`` threads (XNNPACK, LiteRT's default CPU
    delegate), resized to one batch size at a time (LiteRT plans its buffers per shape)."""

    def __init__(self, content: bytes, threads: int | None = None) -> None:
        self._interpreter = interpreter_class()(model_content=content, num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self.batch_size = 0

    def resize(self, batch_size: int) -> None:
        """Plan the buffers for batches of ``batch_size``."""
        shape = [batch_size, *self._interpreter.get_input_details()[0]["shape"][1:]]
        self._interpreter.resize_tensor_input(self._input, shape)
        self._interpreter.allocate_tensors()
        self.batch_size = batch_size

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of a batch of :attr:`batch_size` model inputs (copied in and out, as a user would)."""
        self._interpreter.set_tensor(self._input, x)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)

    def probabilities(self, x: np.ndarray, batch_size: int = PARITY_BATCH) -> np.ndarray:
        """Probabilities of any number of model inputs, ``batch_size`` at a time."""
        parts = []
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size]
            if len(chunk) != self.batch_size:
                self.resize(len(chunk))
            parts.append(self(chunk))
        return np.concatenate(parts)


def convert(model: keras.Model, entry: ModelEntry) -> bytes:
    """The fp32 ``.tflite`` flatbuffer of a Keras model (TFLiteConverter.from_keras_model, dynamic batch axis)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the temporary SavedModel's signature
            return tf.lite.TFLiteConverter.from_keras_model(model).convert()
    except Exception as error:  # the converter raises ConverterError, ValueError or RuntimeError
        raise FashionZooError(f"model {entry.full_name!r}: the TFLite converter failed ({reason(error)})") from None


def export_tflite(
    entry: ModelEntry, model: keras.Model, out: str | os.PathLike, data_dir: str | os.PathLike | None = None
) -> Path:
    """Convert ``model`` and write it to ``out`` atomically, only if LiteRT matches Keras on every test image
    (max abs difference of probabilities <= :data:`PARITY_TOLERANCE`, same top-1 class)."""
    content = convert(model, entry)
    check_parity(model, entry, LiteRTModel(content).probabilities, "LiteRT", PARITY_TOLERANCE, data_dir)
    target = Path(out)
    with atomic_path(target, suffix=".tflite") as tmp:
        tmp.write_bytes(content)
    return target


def tflite_file(
    model: str | ModelEntry,
    weights: str | Path | None = None,
    data_dir: str | os.PathLike | None = None,
    *,
    keras_model: keras.Model | None = None,
) -> Path:
    """The checked ``.tflite`` file of a trained model (released weights unless ``weights`` are given; pass the
    loaded ``keras_model`` to save loading it again), converted once into ``$FASHIONZOO_HOME/bench`` and verified
    before each use like the benchmark's ONNX files (:mod:`fashionzoo.bench.cache`)."""
    entry = resolve(model)
    interpreter_class()  # fail before converting when LiteRT cannot run the result
    return cached_conversion(
        entry,
        weights,
        ".tflite",
        lambda target: export_tflite(entry, keras_model or loading.load(entry, weights), target, data_dir),
    )
