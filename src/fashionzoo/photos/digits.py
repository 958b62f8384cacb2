"""A photo or scan of a handwritten digit -> an MNIST-style 28x28 image, after MNIST's own normalisation.

LeCun et al. fitted each digit into a 20x20 box (keeping its aspect ratio; anti-aliasing gives grey levels) and
centred it in the 28x28 frame by its centre of mass. Weights tagged ``mnist`` carry the ``mnist`` pipeline in their
preprocessing, so ``predict`` of a digit photo runs this instead of the clothing pipeline. Pillow and numpy only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from fashionzoo.photos.decode import to_grayscale
from fashionzoo.photos.garment import SIZE, border_level, in_data_set_format
from fashionzoo.photos.segmentation import fitted_size

BOX = 20
"""The digit's longest side after scaling, as in MNIST."""
CENTRE = 14.0
"""Where the centre of mass goes, in pixel indices: MNIST's test images average 13.99 (rows) and 14.01 (columns),
standard deviation 0.29."""
INK_THRESHOLD = 0.25
"""Fraction of the strongest ink under which a pixel counts as paper (texture, shadows, JPEG noise)."""


def mnist_style(img: Image.Image) -> np.ndarray:
    """A uint8 (28, 28) MNIST-style array: a bright digit on black, fitted into 20x20, centred by mass, its
    brightest pixel 255.

    The paper's level is read from the image border: dark ink on light paper is negated. A 28x28 image on a dark
    background (an MNIST image) is returned unchanged. A blank image gives a black frame."""
    gray = to_grayscale(img)
    if in_data_set_format(img):
        return np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    paper = border_level(gray)
    ink = paper - gray if paper >= 128 else gray - paper
    ink = np.clip(ink, 0.0, None)
    canvas = np.zeros((SIZE, SIZE), dtype=np.uint8)
    if ink.max() <= 0:
        return canvas
    ink[ink < INK_THRESHOLD * ink.max()] = 0.0
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] * (255.0 / ink.max())
    size = fitted_size(crop.shape[0], crop.shape[1], BOX)
    digit = np.asarray(Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS))
    digit = np.clip(digit, 0.0, None)
    digit = digit * (255.0 / digit.max())  # full contrast, as MNIST's strokes have
    mass = digit.sum()
    centre_y = (digit.sum(axis=1) @ np.arange(digit.shape[0])) / mass if mass else digit.shape[0] / 2
    centre_x = (digit.sum(axis=0) @ np.arange(digit.shape[1])) / mass if mass else digit.shape[1] / 2
    top = int(np.clip(round(CENTRE - centre_y), 0, SIZE - digit.shape[0]))
    left = int(np.clip(round(CENTRE - centre_x), 0, SIZE - digit.shape[1]))
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = np.rint(digit).astype(np.uint8)
    return canvas
