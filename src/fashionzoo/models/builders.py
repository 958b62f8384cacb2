"""Keras builders for every model of the registry. Imports TensorFlow/Keras: import lazily."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
from keras import layers

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import resolve


def _head(x: Any, num_classes: int) -> Any:
    """The softmax classifier, computed in float32 even when the model trains in mixed precision."""
    return layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(x)


def image_input(entry: ModelEntry) -> keras.KerasTensor:
    return keras.Input(shape=entry.input_shape, name="image")


def sequential(
    entry: ModelEntry, layers_spec: tuple[str, ...], kernel_initializer: str = "glorot_uniform"
) -> keras.Model:
    """A plain stack from a compact spec: ``conv:FILTERS:KERNEL``, ``pool:SIZE``, ``dropout:RATE``,
    ``dense:UNITS``, ``flatten``; ReLU hidden activations, valid padding, softmax head."""
    inputs = image_input(entry)
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
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, kernel_initializer="he_normal")(
        x
    )
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
    inputs = image_input(entry)
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
        raise FashionZooError(
            f"backbone weights file not found: {backbone_weights} (pass a Keras '{backbone}' "
            "ImageNet no-top weights file, or 'imagenet' to let Keras download it)"
        )
    try:
        base = app(include_top=False, weights=backbone_weights, input_shape=(32, 32, 3))
    except Exception as error:  # Keras raises a bare Exception when its download fails
        if backbone_weights != "imagenet":
            raise
        raise FashionZooError(
            f"could not download the ImageNet {backbone} weights ({reason(error)}); pass "
            "--backbone-weights PATH to a Keras no-top weights file"
        ) from None
    base.trainable = False
    inputs = image_input(entry)
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
    networks are trained apart, each with ``member``'s recipe and its own seed
    (:func:`fashionzoo.training.train.train`); each is named ``seed_N`` inside the ensemble."""
    networks = []
    for seed in seeds:
        network = build(member)
        network.name = f"seed_{seed}"
        networks.append(network)
    inputs = image_input(entry)
    return keras.Model(
        inputs, layers.Average(name="averaged")([network(inputs) for network in networks]), name=entry.name
    )


_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "sequential": sequential,
    "lenet5": lenet5,
    "resnet": resnet,
    "transfer": transfer,
    "ensemble": ensemble,
}


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
        raise FashionZooError(
            f"{entry.full_name}: {error} (builder {entry.builder!r}; its arguments: "
            f"{', '.join(list(inspect.signature(builder).parameters)[1:])})"
        ) from None
    return builder(entry, **kwargs)
