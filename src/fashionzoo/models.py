"""Keras builders for every model of the registry. Imports TensorFlow/Keras: import lazily."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from fashionzoo import hub, runs
from fashionzoo._files import FashionZooError, reason
from fashionzoo.preprocessing import to_model_input
from fashionzoo.registry import DEFAULT_TAG, TAGS, ModelEntry, Preprocessing, resolve
from fashionzoo.weights_file import check_weights_file


def _head(x: Any, num_classes: int) -> Any:
    """The softmax classifier, computed in float32 even when the model trains in mixed precision."""
    return layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(x)


def _input(entry: ModelEntry) -> keras.KerasTensor:
    return keras.Input(shape=entry.input_shape, name="image")


def sequential(
    entry: ModelEntry, layers_spec: tuple[str, ...], kernel_initializer: str = "glorot_uniform"
) -> keras.Model:
    """A plain stack from a compact spec: ``conv:FILTERS:KERNEL``, ``pool:SIZE``, ``dropout:RATE``,
    ``dense:UNITS``, ``flatten``; ReLU hidden activations, valid padding, softmax head."""
    inputs = _input(entry)
    x = inputs
    for spec in layers_spec:
        kind, *args = spec.split(":")
        if kind == "conv":
            x = layers.Conv2D(int(args[0]), int(args[1]), activation="relu", kernel_initializer=kernel_initializer)(x)
        elif kind == "pool":
            x = layers.MaxPooling2D(int(args[0]))(x)
        elif kind == "dropout":
            x = layers.Dropout(float(args[0]))(x)
        elif kind == "dense":
            x = layers.Dense(int(args[0]), activation="relu", kernel_initializer=kernel_initializer)(x)
        elif kind == "flatten":
            x = layers.Flatten()(x)
        else:
            raise ValueError(f"unknown layer spec {spec!r} in model {entry.name!r}")
    return keras.Model(inputs, _head(x, len(entry.classes)), name=entry.name)


def lenet5(entry: ModelEntry, dense1: int = 120, dense2: int = 84) -> keras.Model:
    """LeNet-5 with ReLU and valid padding; ``dense1`` is the width the tuned variant searches."""
    spec = ("conv:6:5", "pool:2", "conv:16:5", "pool:2", "flatten", f"dense:{dense1}", f"dense:{dense2}")
    return sequential(entry, spec)


def _conv_bn(x: Any, filters: int, strides: int = 1, kernel: int = 3) -> Any:
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal")(x)  # fmt: skip
    return layers.BatchNormalization()(x)


def _residual_block(x: Any, filters: int, strides: int) -> Any:
    """A basic residual block: two 3x3 conv-BN, a projection shortcut when the shape changes."""
    y = layers.ReLU()(_conv_bn(x, filters, strides))
    y = _conv_bn(y, filters)
    if strides != 1 or x.shape[-1] != filters:
        x = _conv_bn(x, filters, strides, kernel=1)
    return layers.ReLU()(layers.Add()([x, y]))


def resnet(entry: ModelEntry, stem: int, widths: tuple[int, ...], blocks: tuple[int, ...]) -> keras.Model:
    """A compact residual network: a 3x3 conv-BN-ReLU stem, then one stage per width (``blocks`` residual
    blocks each; every stage after the first halves the resolution), global average pooling, softmax."""
    inputs = _input(entry)
    x = layers.ReLU()(_conv_bn(inputs, stem))
    for stage, (filters, count) in enumerate(zip(widths, blocks, strict=True)):
        for block in range(count):
            x = _residual_block(x, filters, strides=2 if stage > 0 and block == 0 else 1)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _head(x, len(entry.classes)), name=entry.name)


_BACKBONES = {
    "vgg16": (keras.applications.VGG16, keras.applications.vgg16.preprocess_input),
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet50.preprocess_input),
}


def transfer(entry: ModelEntry, backbone: str, backbone_weights: str | None = None) -> keras.Model:
    """Reference D transfer model: 28x28x1 in [0, 1] -> 32x32x3 in ImageNet scaling -> frozen backbone -> head.

    ``backbone_weights``: ``"imagenet"`` (Keras downloads them), a path to a Keras ImageNet weights
    file (no top), or ``None`` for random weights (pipeline checks only: say so, never ship them).
    """
    app, preprocess = _BACKBONES[backbone]
    if backbone_weights not in (None, "imagenet") and not Path(backbone_weights).is_file():
        raise FashionZooError(f"backbone weights file not found: {backbone_weights} (pass a Keras '{backbone}' "
                              "ImageNet no-top weights file, or 'imagenet' to let Keras download it)")
    try:
        base = app(include_top=False, weights=backbone_weights, input_shape=(32, 32, 3))
    except Exception as error:  # Keras raises a bare Exception when its download fails
        if backbone_weights != "imagenet":
            raise
        raise FashionZooError(f"could not download the ImageNet {backbone} weights ({reason(error)}); pass "
                              "--backbone-weights PATH to a Keras no-top weights file") from None  # fmt: skip
    base.trainable = False
    inputs = _input(entry)
    x = layers.Resizing(32, 32, name="resize_32")(inputs)
    x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    x = layers.Rescaling(255.0)(x)
    x = layers.Lambda(preprocess, name="imagenet_preprocess")(x)
    x = base(x, training=False)
    if backbone == "vgg16":
        x = layers.Flatten()(x)
        for units, rate in ((1024, 0), (1024, 0), (1024, 0.5), (512, 0), (512, 0.4), (256, 0), (64, 0), (64, 0.2)):
            x = layers.Dense(units, activation="relu")(x)
            if rate:
                x = layers.Dropout(rate)(x)
    else:
        x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _head(x, len(entry.classes)), name=entry.name)


def ensemble(entry: ModelEntry, member: str, seeds: tuple[int, ...]) -> keras.Model:
    """One network of the registry model ``member`` per seed, their probabilities averaged (a deep ensemble). The
    networks are trained apart, each with ``member``'s recipe and its own seed (:func:`fashionzoo.training.train`);
    each is named ``seed_N`` inside the ensemble."""
    networks = []
    for seed in seeds:
        network = build(member)
        network.name = f"seed_{seed}"
        networks.append(network)
    inputs = _input(entry)
    return keras.Model(inputs, layers.Average(name="averaged")([network(inputs) for network in networks]),
                       name=entry.name)  # fmt: skip


_BUILDERS = {"sequential": sequential, "lenet5": lenet5, "resnet": resnet, "transfer": transfer, "ensemble": ensemble}


def build(model: str | ModelEntry, **overrides: Any) -> keras.Model:
    """An untrained Keras model for a registry entry, name or alias (``cnn-small.mnist``: that tag's classes);
    ``overrides`` change builder arguments."""
    entry = resolve(model)
    kwargs = dict(entry.build_kwargs)
    if entry.weights:
        kwargs.update(entry.weights.build_kwargs)
    kwargs.update(overrides)
    builder = _BUILDERS[entry.builder]
    try:
        inspect.signature(builder).bind(entry, **kwargs)
    except TypeError as error:
        raise FashionZooError(f"{entry.full_name}: {error} (builder {entry.builder!r}; its arguments: "
                              f"{', '.join(list(inspect.signature(builder).parameters)[1:])})") from None  # fmt: skip
    return builder(entry, **kwargs)


def inference_model(entry: ModelEntry, model: keras.Model) -> keras.Model:
    """``model`` as the zoo serves it: with ``entry.test_time_flip``, one graph that runs the image and its mirror
    image as one batch and averages their probabilities (so the ONNX export carries it); else ``model`` itself."""
    if not entry.test_time_flip:
        return model
    inputs = _input(entry)
    mirrored = ops.take(inputs, np.arange(entry.preprocessing.width - 1, -1, -1), axis=2)  # a Gather in ONNX
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
    path = hub.resolve(entry, "weights", weights)
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


def predict_probs(model: keras.Model, images: np.ndarray, batch_size: int = 1024,
                  preprocessing: Preprocessing = TAGS[DEFAULT_TAG].preprocessing) -> np.ndarray:  # fmt: skip
    """Class probabilities for uint8 (N, 28, 28) images, batched."""
    x = to_model_input(images, preprocessing)
    if len(x) == 0:  # Keras's predict fails on an empty batch
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return model.predict(x, batch_size=batch_size, verbose=0)
