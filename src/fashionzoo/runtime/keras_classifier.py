"""The :class:`~fashionzoo.runtime.classifier.Classifier` interface over a Keras model: the TensorFlow reference that
the ONNX path is compared with (``predict --backend keras``).

This module imports TensorFlow; ``fashionzoo.runtime`` does not import it, so ``import fashionzoo.runtime`` stays
TensorFlow-free.

>>> from fashionzoo.runtime.keras_classifier import KerasClassifier
>>> clf = KerasClassifier.from_pretrained("cnn")  # the released weights, SHA-256 verified
>>> [getattr(r, "label", r) for r in clf.classify(["shirt.jpg"], top_k=3)]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fashionzoo.core.devices import keras_device
from fashionzoo.core.errors import FashionZooError
from fashionzoo.models.loading import load, predict_probs
from fashionzoo.photos.calibration import PhotoCalibration, apply_calibration
from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import resolve
from fashionzoo.runtime.classify import FileClassifier, released_calibration


class KerasClassifier(FileClassifier):
    """A registry model's Keras network with :class:`~fashionzoo.runtime.classifier.Classifier`'s
    :meth:`predict_probs` and :meth:`classify`: the same results, photo calibration and device rule."""

    def __init__(
        self,
        model: keras.Model,
        name: str | ModelEntry,
        *,
        device: str = "cpu",
        photo_calibration: PhotoCalibration | None = None,
    ) -> None:
        """Serve ``model``, a network of registry model ``name`` (its classes and input spec), on ``device``
        (``cpu``, ``cuda`` or ``auto``: ``cuda`` without a GPU falls back to the CPU with a warning)."""
        entry = resolve(name)
        self.model = model
        self.name = entry.full_name
        self.classes = entry.classes
        self.input_spec = entry.input_spec
        self.device = keras_device(device)
        self.photo_calibration = photo_calibration

    @classmethod
    def from_pretrained(
        cls,
        name: str | ModelEntry = DEFAULT_MODEL,
        *,
        weights: str | os.PathLike | None = None,
        device: str = "cpu",
        calibrated: bool = True,
    ) -> KerasClassifier:
        """The Keras model of ``name`` with its released weights (shipped, cached or fetched; SHA-256 verified) or
        the local ``weights`` file; with the released weights' photo calibration unless ``calibrated=False`` or
        ``weights`` names another file."""
        entry = resolve(name)
        model = load(entry, Path(weights) if weights is not None else None)
        return cls(
            model,
            entry,
            device=device,
            photo_calibration=released_calibration(entry, weights is not None, calibrated),
        )

    def predict_probs(
        self, images: np.ndarray, batch_size: int = 256, *, scenes: str | Sequence[str | None] | None = None
    ) -> np.ndarray:
        """Class probabilities (N, classes) for uint8 images (N, H, W) or one (H, W), batched; the rows of images
        that ``scenes`` marks as photos shifted by :attr:`photo_calibration` (as
        :meth:`Classifier.predict_probs <fashionzoo.runtime.classifier.Classifier.predict_probs>`)."""
        if batch_size < 1:
            raise FashionZooError(f"batch size must be at least 1, not {batch_size}")
        with tf.device(self.device):
            probs = predict_probs(self.model, images, batch_size, self.input_spec)
        return apply_calibration(probs, scenes, self.photo_calibration)
