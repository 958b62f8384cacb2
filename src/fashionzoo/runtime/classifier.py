"""ONNX Runtime inference without TensorFlow: load an exported model once, classify arrays or image files.

Only the standard library, numpy, onnxruntime, Pillow and the TensorFlow-free fashionzoo modules are imported
here, so ``import fashionzoo.runtime`` stays light enough to embed.

>>> from fashionzoo.runtime import Classifier
>>> clf = Classifier.from_pretrained("cnn")  # the released ONNX file, SHA-256 verified
>>> for result in clf.classify(["shirt.jpg"], top_k=3):
...     print(result)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import existing_file
from fashionzoo.data.datasets import DATASETS, DEFAULT_TAG, FASHION_CLASSES, InputSpec
from fashionzoo.photos.calibration import PhotoCalibration, apply_calibration
from fashionzoo.photos.convert import to_model_input
from fashionzoo.publish import hub
from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import resolve
from fashionzoo.runtime import metadata
from fashionzoo.runtime.classify import FileClassifier, released_calibration
from fashionzoo.runtime.session import (
    CPU_PROVIDER,
    SessionSettings,
    SingleImage,
    cached_session,
    memory_reason,
    ort_reason,
)

PROBABILITY_SLACK = 0.1
"""How far a row of probabilities may sum from 1: int8 files round each probability (the ensemble's rows sum to within
0.017 of 1); logits, a foreign model's usual output, miss it by far."""


class Classifier(FileClassifier):
    """A classifier backed by an exported ONNX file, fp32 or int8 (no TensorFlow).

    What it needs to use the file, class names and input spec (size, scale, the image pipeline), is read from the
    file's ``fashionzoo.*`` metadata: an ONNX file alone is enough. A file without that metadata is taken as a
    Fashion-MNIST model, unless ``name`` names the registry model whose classes and spec to use. The released
    weights' :class:`~fashionzoo.photos.calibration.PhotoCalibration` travels in the released files' metadata and
    comes with :meth:`from_pretrained` (or pass ``photo_calibration``)."""

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        *,
        name: str | ModelEntry | None = None,
        device: str = "cpu",
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        graph_optimization_level: str = "all",
        execution_mode: str = "sequential",
        memory_arena: bool = True,
        memory_pattern: bool = True,
        spinning: bool = True,
        photo_calibration: PhotoCalibration | None = None,
        calibrated: bool = True,
    ) -> None:
        """Open ``onnx_path`` (sessions are shared across instances with the same settings); the session knobs are
        those of :class:`SessionSettings`. :meth:`classify` shifts photos by ``photo_calibration``, else by the
        file's own (its ``fashionzoo.photo_calibration`` metadata, written by ``release``) unless ``calibrated`` is
        off."""
        self.path = existing_file(onnx_path, "an ONNX file")
        fallback = resolve(name) if name else None
        self.settings = SessionSettings(
            graph_optimization_level,
            intra_op_threads,
            inter_op_threads,
            execution_mode,
            memory_arena,
            memory_pattern,
            spinning,
        )
        self.session = cached_session(self.path, device, self.settings)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.name = self.metadata.get(metadata.MODEL, fallback.full_name if fallback else self.path.stem)
        self.classes = self._read_classes(fallback.classes if fallback else FASHION_CLASSES)
        self.input_spec = self._read_input(fallback.input_spec if fallback else None)
        self._check_signature()
        self._input_name = self.session.get_inputs()[0].name
        self._output_name = self.session.get_outputs()[0].name
        self._run_options = ort.RunOptions()  # reused by every call: measured about 1 µs a call faster than none
        axis = self.session.get_inputs()[0].shape[0]  # the batch axis's name fixes it to 1 for the single-image path
        self._batch_axis = axis if isinstance(axis, str) and self.session.get_providers()[0] == CPU_PROVIDER else None
        self._single_image: SingleImage | None = None
        if photo_calibration is None and calibrated:
            photo_calibration = self._read_calibration()
        if photo_calibration is not None and len(photo_calibration.offsets) != len(self.classes):
            raise FashionZooError(
                f"{self.path}: the photo calibration has {len(photo_calibration.offsets)} offsets "
                f"for {len(self.classes)} classes"
            )
        self.photo_calibration = photo_calibration

    @classmethod
    def from_pretrained(
        cls,
        name: str | ModelEntry = DEFAULT_MODEL,
        *,
        onnx_path: str | os.PathLike | None = None,
        int8: bool = False,
        device: str = "cpu",
        calibrated: bool = True,
        **session: Any,
    ) -> Classifier:
        """The released ONNX model of ``name`` (``cnn``, ``cnn-small.mnist``; shipped, cached or fetched; SHA-256
        verified), its int8 version with ``int8=True``, or ``onnx_path``; with the released weights' photo
        calibration (``onnx_path``: the file's own) unless ``calibrated=False``. ``session`` holds the
        constructor's session knobs."""
        entry = resolve(name)
        if int8 and onnx_path is not None:
            raise FashionZooError(f"{onnx_path}: int8=True picks the released int8 file; pass one or the other")
        path = hub.released_file(entry, "onnx_int8" if int8 else "onnx", onnx_path)
        return cls(
            path,
            name=entry.full_name,
            device=device,
            photo_calibration=released_calibration(entry, onnx_path is not None, calibrated),
            calibrated=calibrated,
            **session,
        )

    def _read_classes(self, fallback: tuple[str, ...]) -> tuple[str, ...]:
        raw = self.metadata.get(metadata.CLASSES)
        if raw is None:
            return fallback
        try:
            classes = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            classes = None
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c.strip() for c in classes):
            raise FashionZooError(f"{self.path}: metadata 'fashionzoo.classes' is not a JSON list of class names")
        if len(set(classes)) != len(classes):
            twice = sorted({c for c in classes if classes.count(c) > 1})
            raise FashionZooError(f"{self.path}: metadata 'fashionzoo.classes' names {', '.join(twice)} twice")
        return tuple(classes)

    def _read_calibration(self) -> PhotoCalibration | None:
        """The photo calibration in ``fashionzoo.photo_calibration``, if the file has one."""
        raw = self.metadata.get(metadata.PHOTO_CALIBRATION)
        if raw is None:
            return None
        try:
            return PhotoCalibration.from_json(json.loads(raw))
        except (ValueError, TypeError, KeyError, RecursionError) as error:  # JSONDecodeError is a ValueError
            raise FashionZooError(
                f"{self.path}: metadata '{metadata.PHOTO_CALIBRATION}' is not a photo calibration ({error}); "
                "release the model again, or pass calibrated=False (--uncalibrated)"
            ) from None

    def _read_input(self, fallback: InputSpec | None) -> InputSpec:
        """The input spec from ``fashionzoo.input``, else ``fallback``, else Fashion-MNIST's."""
        raw = self.metadata.get(metadata.INPUT)
        if raw is None:
            return fallback or DATASETS[DEFAULT_TAG].input
        try:
            return InputSpec.from_json(raw)
        except (ValueError, TypeError) as error:
            raise FashionZooError(
                f"{self.path}: metadata 'fashionzoo.input' is not a usable input spec ({error}); export the model again"
            ) from None

    def _check_signature(self) -> None:
        """Refuse a graph that is not one float (N, H, W, C) input with a dynamic N, as the input spec says, and one
        (N, classes) output."""
        spec = self.input_spec
        expected_shape = (spec.height, spec.width, spec.channels)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = tuple(inputs[0].shape) if len(inputs) == 1 else ()
        if (
            len(shape) != 4
            or inputs[0].type != "tensor(float)"
            or isinstance(shape[0], int)
            or shape[1:] != expected_shape
        ):
            found = "; ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
            expected = ", ".join(map(str, expected_shape))
            raise FashionZooError(
                f"{self.path}: not a fashionzoo image model (input {found}; expected one float "
                f"input [N, {expected}] with a dynamic batch axis N)"
            )
        shape = tuple(outputs[0].shape) if len(outputs) == 1 else ()
        if len(shape) != 2 or shape[1] != len(self.classes):
            found = "; ".join(f"{o.name} {o.shape}" for o in outputs)
            raise FashionZooError(
                f"{self.path}: not a fashionzoo image model (output {found}; expected one output "
                f"[N, {len(self.classes)}] of class probabilities)"
            )

    def predict_probs(
        self, images: np.ndarray, batch_size: int = 256, *, scenes: str | Sequence[str | None] | None = None
    ) -> np.ndarray:
        """Class probabilities, float32 (N, classes), for uint8 images (N, H, W) or one (H, W), batched.

        The model's own reading, unless ``scenes`` marks images converted from photos (one scene for all, or one
        per image, as :func:`fashionzoo.photos.convert.convert_image` returns it; None for an image in the data set's
        format): their probabilities are shifted by :attr:`photo_calibration`, as :meth:`classify` and ``predict``
        shift them.

        >>> pixels, scene = convert_image(Image.open(io.BytesIO(upload)), clf.input_spec.pipeline)
        >>> clf.predict_probs(pixels, scenes=scene)  # as predict reads a photo; a file opened with
        >>> # photos.decode.load_image(path, 128) gives exactly predict's figures (it decodes JPEGs at reduced size)
        """
        if batch_size < 1:
            raise FashionZooError(f"batch size must be at least 1, not {batch_size}")
        x = to_model_input(images, self.input_spec)
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        probs = np.concatenate([self.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        return apply_calibration(probs, scenes, self.photo_calibration)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 (N, classes), of a float32 model-input batch (N, H, W, C), as
        :func:`fashionzoo.photos.convert.to_model_input` makes it; a batch of one takes the faster single-image
        path (:class:`SingleImage`) on the CPU when the batch axis has a name. A failure while running, or an
        output that is not one row per image, is refused."""
        try:
            if len(x) == 1 and self._batch_axis is not None:
                probs = (self._single_image or self._open_single_image(self._batch_axis))(x)
            else:
                probs = self.session.run([self._output_name], {self._input_name: x}, self._run_options)[0]
        except Exception as error:  # onnxruntime raises its own pybind exception types (Fail, RuntimeException...)
            spec = self.input_spec
            expected = (spec.height, spec.width, spec.channels)
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != expected:
                found = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
                raise FashionZooError(
                    f"run takes a float32 batch (N, {', '.join(map(str, expected))}) as "
                    f"to_model_input makes it, not {found}"
                ) from None
            why = memory_reason(error) or f"the model failed while running ({ort_reason(error)})"
            raise FashionZooError(f"{self.path}: {why}") from None
        if probs.shape != (len(x), len(self.classes)):
            raise FashionZooError(
                f"{self.path}: the model returned shape {probs.shape} for {len(x)} images, not "
                f"{(len(x), len(self.classes))}: not a per-image classifier"
            )
        first = probs[0] if len(probs) else None  # one row per call: logits miss on every row, and it costs ~2 us
        if first is not None and np.isfinite(first).all():  # a non-finite row fails its own file
            total = float(first.sum())
            if abs(total - 1.0) > PROBABILITY_SLACK or float(first.min()) < -1e-3:
                raise FashionZooError(
                    f"{self.path}: the model's outputs are not probabilities (a row sums to {total:.4g}, with values "
                    f"down to {float(first.min()):.4g}); export the model with a softmax at the end"
                )
        return probs

    def _open_single_image(self, axis: str) -> SingleImage:
        """The single-image path, created on first use (a second session: tens of milliseconds), on the CPU: it
        exists only when the first session runs there (a ``cuda`` request that fell back already said so once).
        It keeps the thread settings: one thread was slower for the flagship (docs/photos.md)."""
        self._single_image = SingleImage(
            cached_session(self.path, "cpu", self.settings, batch=(axis, 1)), len(self.classes)
        )
        return self._single_image
