"""The inference backends the benchmark compares on one trained model: Keras (``predict`` and a direct call), ONNX
Runtime (a plain ``session.run`` and the zoo's own ``Classifier.run``, fp32 and int8), and the peers a user could
embed instead, LiteRT and OpenVINO (optional: ``pip install "fashionzoo[bench]"``). Imports TensorFlow: import
lazily.

Each backend opens per batch size (LiteRT and OpenVINO plan their buffers for one input shape, and get to) and
takes the same float32 NHWC batch; a backend that cannot run here carries the reason instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fashionzoo.bench.litert import INSTALL_HINT, LiteRTModel
from fashionzoo.core.devices import keras_device
from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.machine import this_cpu
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.runtime.classifier import Classifier

Call = Callable[[np.ndarray], np.ndarray]
"""Probabilities of one batch of model inputs."""


@dataclass(frozen=True)
class Backend:
    """A backend of one model: ``open(batch_size)`` gives its call for that batch size; ``missing`` says why it
    cannot run here (``open`` is then None)."""

    name: str
    open: Callable[[int], Call] | None = None
    missing: str | None = None


def _keras(entry: ModelEntry, model: keras.Model, device: str) -> list[Backend]:
    spec = tf.TensorSpec([None, *entry.input_shape], tf.float32)
    call = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    where = keras_device(device)

    def predict(x: np.ndarray) -> np.ndarray:
        with tf.device(where):
            return model.predict(x, batch_size=len(x), verbose=0)

    def direct(x: np.ndarray) -> np.ndarray:
        with tf.device(where):
            return call(x).numpy()

    return [Backend("keras_predict", lambda size: predict), Backend("keras_call", lambda size: direct)]


def _onnx_runtime(entry: ModelEntry, files: dict[str, Path], device: str, threads: int | None) -> list[Backend]:
    """``ort_session``: ``InferenceSession.run`` of the default-settings session, the zoo's path before issue 17;
    ``zoo``/``zoo_int8``: :meth:`Classifier.run` on the fp32/int8 file (what ``predict`` runs)."""
    fp32, int8 = (
        Classifier(files[key], name=entry.full_name, device=device, intra_op_threads=threads)
        for key in ("fp32", "int8")
    )
    session, feed, fetch = fp32.session, fp32.session.get_inputs()[0].name, [fp32.session.get_outputs()[0].name]
    return [
        Backend("ort_session", lambda size: lambda x: session.run(fetch, {feed: x})[0]),
        Backend("zoo", lambda size: fp32.run),
        Backend("zoo_int8", lambda size: int8.run),
    ]


def _litert(tflite: Path | FashionZooError, threads: int) -> Backend:
    if isinstance(tflite, FashionZooError):
        return Backend("litert", missing=str(tflite))
    content = tflite.read_bytes()

    def open_size(size: int) -> Call:
        model = LiteRTModel(content, threads)
        model.resize(size)
        return model

    return Backend("litert", open_size)


def _openvino(entry: ModelEntry, onnx_path: Path, threads: int) -> Backend:
    """OpenVINO's CPU plugin on the released ONNX file, reshaped to each batch size. fp32 is asked for: on CPUs
    that offer bf16, OpenVINO runs fp32 models in bf16 by default (probabilities off by ~5e-3 here)."""
    try:
        import openvino
    except ImportError:
        return Backend("openvino", missing=f"OpenVINO is not installed (openvino); {INSTALL_HINT}")
    core = openvino.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}

    def open_size(size: int) -> Call:
        model = core.read_model(onnx_path)
        model.reshape([size, *entry.input_shape])
        request = core.compile_model(model, "CPU", config).create_infer_request()
        return lambda x: request.infer({0: x})[0]

    return Backend("openvino", open_size)


def backends(
    entry: ModelEntry,
    model: keras.Model,
    files: dict[str, Path],
    tflite: Path | FashionZooError,
    device: str,
    threads: int | None,
) -> dict[str, Backend]:
    """Every backend of :data:`fashionzoo.bench.report.LABELS` for one model: ``files`` holds its fp32 and int8
    ONNX files, ``tflite`` its checked LiteRT file or why there is none. ``threads`` goes to ONNX Runtime's
    sessions (None: their default, one per physical core); LiteRT and
    OpenVINO get ``threads`` or one per physical core, as ONNX Runtime does; Keras keeps TensorFlow's process-wide
    setting."""
    peer_threads = threads or this_cpu()["physical_cores"] or 1
    found = [
        *_keras(entry, model, device),
        *_onnx_runtime(entry, files, device, threads),
        _litert(tflite, peer_threads),
        _openvino(entry, files["fp32"], peer_threads),
    ]
    return {backend.name: backend for backend in found}
