"""fashionzoo: a model zoo of Fashion-MNIST clothing classifiers.

``import fashionzoo`` is light: TensorFlow is imported only by the functions that need Keras.

>>> import fashionzoo
>>> fashionzoo.list_models()[:3]
['cnn', 'zoo-resnet', 'mlp']
>>> model = fashionzoo.load("cnn")  # trained Keras model, verified weights
>>> digits = fashionzoo.load("cnn-small.mnist")  # the same architecture's MNIST weights (a tag)
>>> classifier = fashionzoo.Classifier.from_pretrained()  # the default model's ONNX file: no TensorFlow
>>> [getattr(p, "label", p) for p in classifier.classify(["shirt.jpg"])]  # as `predict` reads photos; a Failure
... # (no label) for a file that cannot be read
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.version import __version__
from fashionzoo.data.datasets import FASHION_CLASSES
from fashionzoo.registry import DEFAULT_MODEL, ModelEntry, get_entry, list_models, resolve

if TYPE_CHECKING:
    import keras

    from fashionzoo.runtime import Classifier

__all__ = [
    "DEFAULT_MODEL",
    "__version__",
    "FASHION_CLASSES",
    "Classifier",
    "FashionZooError",
    "ModelEntry",
    "build",
    "get_entry",
    "list_models",
    "load",
]


def __getattr__(name: str) -> Any:
    """``Classifier`` (:class:`fashionzoo.runtime.Classifier`, ONNX Runtime, no TensorFlow), imported on first use
    so that ``import fashionzoo`` stays light."""
    if name == "Classifier":
        from fashionzoo.runtime import Classifier

        return Classifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build(name: str | ModelEntry, **overrides: Any) -> keras.Model:
    """An untrained Keras model by registry name or alias (``overrides`` change builder arguments)."""
    entry = resolve(name)  # a wrong name is refused before TensorFlow is imported
    from fashionzoo.models.builders import build as _build

    return _build(entry, **overrides)


def load(
    name: str | ModelEntry = DEFAULT_MODEL, weights: str | Path | None = None, *, test_time_flip: bool = True
) -> keras.Model:
    """A trained Keras model: released weights (shipped, cached or fetched, SHA-256 verified) or a local file.
    ``name`` may carry a weights tag: ``cnn-small.mnist`` is the same architecture trained on MNIST digits.

    Models with test-time flipping (the flagship) average each image with its mirror image inside the model;
    ``test_time_flip=False`` returns the bare network."""
    entry = resolve(name)  # a wrong name is refused before TensorFlow is imported
    from fashionzoo.models.loading import load as _load

    return _load(entry, weights, test_time_flip=test_time_flip)
