"""Classification metrics from predicted probabilities (numpy only), and ``evaluate``: a Keras model on a test file."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from fashionzoo.core.errors import FashionZooError
from fashionzoo.data.loading import data_folder, load_split
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import resolve

log = logging.getLogger(__name__)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def metrics_from_probs(probs: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, cross-entropy loss, per-class accuracy, confusion matrix and the most confused pairs."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    predicted = probs.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, len(classes))
    support = matrix.sum(axis=1)
    per_class = {c: float(matrix[i, i] / support[i]) if support[i] else None for i, c in enumerate(classes)}
    off_diagonal = [(int(matrix[i, j]), i, j) for i in range(len(classes)) for j in range(len(classes)) if i != j]
    confused = [
        {"true": classes[i], "predicted": classes[j], "count": count}
        for count, i, j in sorted(off_diagonal, reverse=True)[:5]
        if count
    ]
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    return {
        "accuracy": float((predicted == labels).mean()),
        "loss": float(-np.log(picked).mean()),
        "n": int(len(labels)),
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
        "most_confused": confused,
    }


def evaluate(
    model: str | ModelEntry, weights: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Load a trained model and measure it on the official test file of its data set (its tag)."""
    from fashionzoo.models.loading import load, predict_probs

    entry = resolve(model)
    test = load_split("test", entry.tag, data_dir)
    if not len(test):
        images = data_folder(entry.tag, data_dir)[0] / next(iter(test.files))
        raise FashionZooError(f"{images}: holds 0 test images; nothing to evaluate (point --data-dir at a test split)")
    keras_model = load(entry, Path(weights) if weights is not None else None)
    log.info("%s: predicting the %s test images", entry.full_name, f"{len(test):,}")  # the CLI's progress
    probs = predict_probs(keras_model, test.images, input_spec=entry.input_spec)
    return {"model": entry.full_name, "dataset": entry.tag, **metrics_from_probs(probs, test.labels, entry.classes)}
