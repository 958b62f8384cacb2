"""Export a trained Keras model to ONNX, checked against Keras on the shared test images before anything is written.

Imports TensorFlow, tf2onnx and onnx: import lazily. The Keras model is converted through a ``tf.function`` (the
tf2onnx route that works with Keras 3) with a dynamic batch axis: one float32 NHWC input ``image`` in [0, 1] and
one output ``probabilities``. What a runtime needs to use the file travels in its ``metadata_props``, the photo
calibration too (:func:`write_photo_calibration`, at release).

:func:`quantize_int8` turns an exported file into a static int8 one with the same input and output, calibrated on
training images and refused if it loses more than :data:`QUANT_MAX_DROP` test accuracy.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.core.files import atomic_path, sha256_file
from fashionzoo.core.version import __version__
from fashionzoo.data.loading import SPLIT_SEED, Split, load_split, train_val_split
from fashionzoo.models.loading import load as load_trained
from fashionzoo.photos.calibration import PhotoCalibration
from fashionzoo.photos.convert import to_model_input
from fashionzoo.publish import hub
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import resolve
from fashionzoo.runtime import metadata
from fashionzoo.training import runs

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
PARITY_TOLERANCE = 1e-5
"""Largest absolute difference of probabilities allowed between Keras and another runtime (ONNX Runtime, LiteRT) on
the test images."""
PREPROCESSING_TEXT = {
    "fashion-mnist": "uint8 grayscale 28x28, bright garment on dark background, divided by 255",
    "mnist": "uint8 grayscale 28x28, bright digit on black fitted into 20x20 and centred by mass, divided by 255",
}
"""The ``fashionzoo.preprocessing`` metadata text per pipeline (the exact spec is ``fashionzoo.input``)."""
TEST_TIME_FLIP_TEXT = "flip: the image and its mirror image run as one batch, probabilities averaged"
DEFAULT_OPSET = 17
QUANT_MAX_DROP = 0.005
"""Largest loss of test accuracy (a fraction: 0.005 = 0.5 points) allowed from fp32 to int8."""
QUANTIZATION_TEXT = "int8 static, QDQ, uint8 activations, int8 per-channel 7-bit weights, MinMax"
PARITY_BATCH = 500
"""Images per call when a parity check runs a model over the test images."""


def _to_onnx(model: keras.Model, entry: ModelEntry, opset: int) -> onnx.ModelProto:
    """Convert ``model`` with a symbolic batch axis named ``batch`` on its input and output."""
    p = entry.input_spec

    @tf.function
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(image, training=False)}

    spec = tf.TensorSpec([None, p.height, p.width, p.channels], tf.float32, name=INPUT_NAME)
    newest = max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    if not 9 <= opset <= newest:  # tf2onnx logs a traceback per failed op before its own error otherwise
        raise FashionZooError(
            f"opset {opset}: tf2onnx {tf2onnx.__version__} converts opsets 9 to {newest}; pass "
            f"--opset between them (default {DEFAULT_OPSET})"
        )
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
    except Exception as error:  # tf2onnx raises bare ValueError/RuntimeError/AssertionError on unsupported graphs
        raise FashionZooError(
            f"model {entry.full_name!r}: tf2onnx could not convert it at opset {opset} ({reason(error)})"
        ) from None
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return proto


def _keras_probs(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [np.asarray(model(x[i : i + PARITY_BATCH], training=False)) for i in range(0, len(x), PARITY_BATCH)]
    )


def _onnx_probs(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate(
        [session.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + PARITY_BATCH]})[0] for i in range(0, len(x), PARITY_BATCH)]
    )


def check_parity(
    model: keras.Model,
    entry: ModelEntry,
    probs_of: Callable[[np.ndarray], np.ndarray],
    what: str,
    tolerance: float,
    data_dir: str | os.PathLike | None = None,
) -> float:
    """Max abs difference of probabilities between Keras and ``probs_of`` (``what``: the converted file's kind) on
    the test split; refuses above ``tolerance`` or on any top-1 change."""
    name = entry.full_name
    x = to_model_input(_test_split(entry, data_dir).images, entry.input_spec)
    expected, got = _keras_probs(model, x), probs_of(x)
    if expected.shape != got.shape:
        raise FashionZooError(f"model {name!r}: {what} output shape {got.shape} differs from Keras {expected.shape}")
    max_diff = float(np.abs(expected - got).max())
    disagree = int((expected.argmax(axis=1) != got.argmax(axis=1)).sum())
    if not max_diff <= tolerance or disagree:
        raise FashionZooError(
            f"model {name!r}: {what} does not match Keras on {len(x)} test images (max abs "
            f"difference {max_diff:.2e}, tolerance {tolerance:.0e}; {disagree} top-1 changes); "
            "nothing written"
        )
    return max_diff


def _test_split(entry: ModelEntry, data_dir: str | os.PathLike | None) -> Split:
    """The test split the checks run on; an empty one is refused (nothing would be checked)."""
    test = load_split("test", entry.tag, data_dir)
    if not len(test):
        raise FashionZooError(
            f"{entry.full_name}: the test file has no images, so nothing could be checked; pass "
            "--data-dir with the official files"
        )
    return test


def _weights_facts(entry: ModelEntry, weights: str | Path | None) -> dict[str, str]:
    """SHA-256 and test accuracy of the weights used: the released record, or an explicit file and its run's
    record (only if that record names the file and measured these very bytes: records before ``weights_sha256``
    give no accuracy)."""
    released = entry.weights.files.get("weights") if entry.weights else None
    if weights is None:
        if released is None:
            return {}
        sha, accuracy = released.sha256, entry.weights.metrics.get("accuracy") if entry.weights else None
    else:
        path = Path(weights).expanduser()
        sha = sha256_file(path)
        run = runs.record_for_weights(path)
        if released is not None and entry.weights and sha == released.sha256:
            accuracy = entry.weights.metrics.get("accuracy")
        else:
            accuracy = run.test["accuracy"] if run and run.weights_sha256 else None
    facts = {metadata.WEIGHTS_SHA256: sha}
    if accuracy is not None:
        facts[metadata.TEST_ACCURACY] = str(accuracy)
    return facts


def _calibration_text(calibration: PhotoCalibration) -> str:
    return json.dumps(calibration.to_json())


def _released_calibration(entry: ModelEntry, facts: dict[str, str]) -> dict[str, str]:
    """The released photo calibration as metadata, for an export of the released weights themselves (by SHA-256)."""
    released = entry.weights
    if released is None or released.photo_calibration is None or "weights" not in released.files:
        return {}
    if facts.get(metadata.WEIGHTS_SHA256) != released.files["weights"].sha256:
        return {}
    return {metadata.PHOTO_CALIBRATION: _calibration_text(released.photo_calibration)}


def export_onnx(
    model_name: str | ModelEntry,
    out: str | Path | None = None,
    *,
    weights: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    data_dir: str | os.PathLike | None = None,
    model: keras.Model | None = None,
) -> Path:
    """Convert a trained model to ONNX at ``out`` (default ``<name>.onnx`` here) and return the path.

    The model is ``load_trained(name, weights)`` unless a Keras ``model`` is given. The file is written
    atomically, and only after ``onnx.checker`` passes and ONNX Runtime matches Keras on every test image
    (max abs difference of probabilities <= :data:`PARITY_TOLERANCE`, same top-1 class). The released weights'
    export carries their photo calibration, as the released file does.
    """
    entry = resolve(model_name)
    facts_known = model is None or weights is not None
    if model is None:
        model = load_trained(entry, weights)
    facts = _weights_facts(entry, weights) if facts_known else {}
    log.info("%s: converting to ONNX with tf2onnx (opset %d)", entry.full_name, opset)  # the CLI's progress
    proto = _to_onnx(model, entry, opset)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        why = reason(error, first_line=True)
        raise FashionZooError(f"model {entry.full_name!r}: the converted ONNX graph is invalid ({why})") from None
    log.info("%s: checking ONNX Runtime against Keras on the test images", entry.full_name)
    max_diff = check_parity(model, entry, lambda x: _onnx_probs(proto, x), "ONNX", PARITY_TOLERANCE, data_dir)
    properties = {
        metadata.MODEL: entry.full_name,
        metadata.DATASET: entry.tag,
        metadata.VERSION: __version__,
        metadata.CLASSES: json.dumps(list(entry.classes)),
        metadata.INPUT: entry.input_spec.to_json(),
        metadata.PREPROCESSING: PREPROCESSING_TEXT[entry.input_spec.pipeline],
        metadata.TEST_TIME_AUGMENTATION: TEST_TIME_FLIP_TEXT if entry.test_time_flip else "none",
        **facts,
        **_released_calibration(entry, facts),
        metadata.PARITY_MAX_ABS_DIFF: repr(max_diff),
    }
    onnx.helper.set_model_props(proto, properties)
    target = Path(out) if out is not None else Path(f"{entry.full_name}.onnx")
    with atomic_path(target, suffix=".onnx") as tmp:
        onnx.save_model(proto, tmp)
    return target


def write_photo_calibration(path: str | os.PathLike, calibration: PhotoCalibration | None) -> bool:
    """Record ``calibration`` in the ONNX file's ``fashionzoo.photo_calibration`` metadata (remove it for None),
    atomically, so that the file reads photos as its weights' release does; whether the file changed (the same
    calibration again changes no byte)."""
    proto = onnx.load(os.fspath(path))
    properties = {p.key: p.value for p in proto.metadata_props}
    wanted = {key: value for key, value in properties.items() if key != metadata.PHOTO_CALIBRATION}
    if calibration is not None:
        wanted[metadata.PHOTO_CALIBRATION] = _calibration_text(calibration)
    if wanted == properties:
        return False
    onnx.helper.set_model_props(proto, wanted)
    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save_model(proto, tmp)
    return True


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """The ``fashionzoo.*`` metadata of an ONNX file and its opset (for the CLI's summary line)."""
    proto = onnx.load(os.fspath(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"opset": opset, **{p.key: p.value for p in proto.metadata_props}}


class _Calibration(CalibrationDataReader):
    """Feeds calibration images to ``quantize_static`` in batches."""

    def __init__(self, x: np.ndarray, batch: int = 100) -> None:
        self._batches = iter([x[i : i + batch] for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def calibration_images(
    model_name: str | ModelEntry, size: int = 1000, data_dir: str | os.PathLike | None = None
) -> np.ndarray:
    """A fixed-seed sample of ``size`` model inputs from the model's training split (never validation or test)."""
    entry = resolve(model_name)
    train, _ = train_val_split(load_split("train", entry.tag, data_dir), entry.recipe.val_fraction)
    if not 0 < size <= len(train):
        raise FashionZooError(f"calibration size must be between 1 and {len(train)} training images, not {size}")
    chosen = np.sort(np.random.default_rng(SPLIT_SEED).choice(len(train), size, replace=False))
    return to_model_input(train.images[chosen], entry.input_spec)


def _onnx_predictions(path: str | os.PathLike, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return np.concatenate(
        [
            session.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + PARITY_BATCH]})[0].argmax(axis=1)
            for i in range(0, len(x), PARITY_BATCH)
        ]
    )


def quantize_int8(
    model_name: str | ModelEntry,
    fp32_onnx: str | os.PathLike,
    out: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    calibration_size: int = 1000,
) -> Path:
    """Statically quantise an exported fp32 ONNX file to int8 at ``out`` and return the path.

    QDQ format (ONNX Runtime's recommended CPU format; QOperator measured no faster), uint8 activations and
    per-channel int8 weights reduced to 7 bits (ONNX Runtime's advice for x86 CPUs without VNNI, safe with it),
    MinMax ranges from ``calibration_size`` training images; the softmax stays in float so probabilities keep
    their precision. Written atomically, only if the int8 test accuracy is at most :data:`QUANT_MAX_DROP` below
    the fp32 file's; the fp32 ``fashionzoo.*`` metadata is copied and the quantisation and accuracies added.
    """
    entry = resolve(model_name)
    source = Path(fp32_onnx)
    fp32 = onnx.load(os.fspath(source))
    reader = _Calibration(calibration_images(entry, calibration_size, data_dir))
    test = _test_split(entry, data_dir)
    x = to_model_input(test.images, entry.input_spec)
    with tempfile.TemporaryDirectory(prefix="fashionzoo-int8-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        try:
            quant_pre_process(source, prepared, skip_symbolic_shape=True)
            quantize_static(
                prepared,
                quantized,
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=[n.name for n in fp32.graph.node if n.op_type == "Softmax"],
            )
        except Exception as error:  # the quantisation tools raise bare ValueError/RuntimeError/onnx errors
            raise FashionZooError(f"{source}: int8 quantisation failed ({reason(error)})") from None
        fp32_top1, int8_top1 = _onnx_predictions(source, x), _onnx_predictions(quantized, x)
        proto = onnx.load(os.fspath(quantized))
    fp32_correct, int8_correct = int((fp32_top1 == test.labels).sum()), int((int8_top1 == test.labels).sum())
    n = len(test)
    if fp32_correct - int8_correct > QUANT_MAX_DROP * n:
        raise FashionZooError(
            f"model {entry.full_name!r}: int8 test accuracy {int8_correct / n:.4f} is more than "
            f"{QUANT_MAX_DROP * 100:g} points below fp32 {fp32_correct / n:.4f} on {n} test "
            "images; nothing written"
        )
    properties = {
        p.key: p.value
        for p in fp32.metadata_props
        if p.key.startswith(metadata.PREFIX) and p.key != metadata.PARITY_MAX_ABS_DIFF
    }  # the fp32 file's figure: not this file's
    properties.update(
        {
            metadata.QUANTIZATION: f"{QUANTIZATION_TEXT}, calibrated on {calibration_size} training images",
            metadata.TEST_ACCURACY: repr(int8_correct / n),
            metadata.FP32_TEST_ACCURACY: repr(fp32_correct / n),
            metadata.FP32_TOP1_AGREEMENT: repr(float((fp32_top1 == int8_top1).mean())),
            metadata.FP32_SHA256: sha256_file(source),
        }
    )
    onnx.helper.set_model_props(proto, properties)
    target = Path(out)
    with atomic_path(target, suffix=".onnx") as tmp_file:
        onnx.save_model(proto, tmp_file)
    return target


def export_int8(
    model_name: str | ModelEntry,
    out: str | Path | None = None,
    *,
    weights: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    data_dir: str | os.PathLike | None = None,
    calibration_size: int = 1000,
) -> Path:
    """An int8 ONNX file at ``out`` (default ``<name>.int8.onnx`` here) from the released fp32 ONNX file, or from a
    fresh checked fp32 export when there is none, ``weights`` are given or ``opset`` differs from the release's."""
    entry = resolve(model_name)
    target = Path(out) if out is not None else Path(f"{entry.full_name}.int8.onnx")
    released = entry.weights is not None and "onnx" in entry.weights.files
    if released and weights is None and opset == DEFAULT_OPSET:
        return quantize_int8(
            entry, hub.released_file(entry, "onnx"), target, data_dir=data_dir, calibration_size=calibration_size
        )
    with tempfile.TemporaryDirectory(prefix="fashionzoo-fp32-") as tmp:
        fp32 = export_onnx(
            entry, Path(tmp) / f"{entry.full_name}.onnx", weights=weights, opset=opset, data_dir=data_dir
        )
        return quantize_int8(entry, fp32, target, data_dir=data_dir, calibration_size=calibration_size)
