"""Building and loading Keras models by registry entry."""

from __future__ import annotations

import warnings
from pathlib import Path

import keras
import numpy as np
from keras import ops

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.data.datasets import DATASETS, DEFAULT_TAG, InputSpec
from fashionzoo.models.builders import build, image_input
from fashionzoo.models.weights_file import check_weights_file
from fashionzoo.photos.convert import to_model_input
from fashionzoo.publish import hub
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import resolve
from fashionzoo.training import runs


def inference_model(entry: ModelEntry, model: keras.Model) -> keras.Model:
    """``model`` as the zoo serves it: with ``entry.test_time_flip``, one graph that runs the image and its mirror
    image as one batch and averages their probabilities (so the ONNX export carries it); else ``model`` itself."""
    if not entry.test_time_flip:
        return model
    inputs = image_input(entry)
    mirrored = ops.take(inputs, np.arange(entry.input_spec.width - 1, -1, -1), axis=2)  # a Gather in ONNX
    probs = model(ops.concatenate([inputs, mirrored], axis=0))
    averaged = ops.mean(ops.reshape(probs, (entry.views_per_image, -1, len(entry.classes))), axis=0)
    return keras.Model(inputs, averaged, name=f"{entry.name}-flip-averaged")


def load(model: str | ModelEntry, weights: str | Path | None = None, *, test_time_flip: bool = True) -> keras.Model:
    """A trained Keras model: the registry's builder with verified released weights, or ``weights`` (a local
    ``.weights.h5`` file, e.g. from ``fashionzoo train``, built with the arguments its run recorded). Only tensors
    are read from the file, never code.

    Models whose entry sets ``test_time_flip`` come wrapped by :func:`inference_model` (pass
    ``test_time_flip=False`` for the bare network, e.g. to fine-tune it)."""
    entry = resolve(model)
    path = hub.released_file(entry, "weights", weights)
    if not path.name.endswith(".weights.h5"):
        raise FashionZooError(f"{path}: expected a Keras '.weights.h5' file (as written by 'fashionzoo train')")
    run = runs.record_for_weights(path) if weights is not None else None
    kwargs = dict(run.build_kwargs) if run else {}
    if entry.needs_backbone_weights:
        kwargs["backbone_weights"] = None  # the checkpoint holds the whole backbone
    keras_model = build(entry, **kwargs)
    check_weights_file(path, keras_model, entry.full_name)  # before Keras reads anything: shapes, dtypes, no data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Keras only warns when parts of the file do not match: refuse
            keras_model.load_weights(path)
    except (ValueError, OSError, KeyError, UserWarning) as error:
        why = reason(error, first_line=True)
        raise FashionZooError(f"{path}: these weights do not fit model {entry.full_name!r} ({why})") from None
    return inference_model(entry, keras_model) if test_time_flip else keras_model


def predict_probs(
    model: keras.Model,
    images: np.ndarray,
    batch_size: int = 1024,
    input_spec: InputSpec = DATASETS[DEFAULT_TAG].input,
) -> np.ndarray:
    """Class probabilities for uint8 (N, 28, 28) images, batched."""
    x = to_model_input(images, input_spec)
    if len(x) == 0:  # Keras's predict fails on an empty batch
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return model.predict(x, batch_size=batch_size, verbose=0)
