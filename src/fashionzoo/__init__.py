"""fashionzoo: a model zoo of Fashion-MNIST clothing classifiers.

``import fashionzoo`` is light: TensorFlow is imported only by the functions that need Keras.

>>> import fashionzoo
>>> fashionzoo.list_models()[:2]
['cnn', 'mlp']
>>> model = fashionzoo.load("cnn")  # trained Keras model, verified weights
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashionzoo._files import FashionZooError
from fashionzoo.registry import DEFAULT_MODEL, FASHION_CLASSES, ModelEntry, get_entry, list_models

if TYPE_CHECKING:
    import keras

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_MODEL", "FASHION_CLASSES", "FashionZooError", "ModelEntry",
    "build", "get_entry", "list_models", "load",
]  # fmt: skip


def build(name: str, **overrides: Any) -> keras.Model:
    """An untrained Keras model by registry name or alias (``overrides`` change builder arguments)."""
    from fashionzoo.models import build as _build

    return _build(name, **overrides)


def load(name: str = DEFAULT_MODEL, weights: str | Path | None = None, *, test_time_flip: bool = True) -> keras.Model:
    """A trained Keras model: released weights (shipped, cached or fetched, SHA-256 verified) or a local file.

    Models with test-time flipping (the flagship) average each image with its mirror image inside the model;
    ``test_time_flip=False`` returns the bare network."""
    from fashionzoo.models import load as _load

    return _load(name, weights, test_time_flip=test_time_flip)
