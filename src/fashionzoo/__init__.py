"""fashionzoo: a model zoo of Fashion-MNIST clothing classifiers.

``import fashionzoo`` is light: TensorFlow is imported only by the functions that need Keras.
"""

from __future__ import annotations

__version__ = "0.1.0"
