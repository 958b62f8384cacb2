"""The ``fashion-mnist`` pipeline: a product photo turned into a Fashion-MNIST-style 28x28 image."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageFilter

from fashionzoo.photos.decode import to_8bit, to_grayscale, to_luma
from fashionzoo.photos.segmentation import border_colour, find_garment, fitted_size

SIZE = 28

_RESAMPLE = Image.Resampling.BOX
"""Downscaling filter (area average): among the best of Pillow's filters on synthetic photos, and robust to fine texture
(chosen on test images made into photos: docs/photos.md)."""
_SHARPEN_PERCENT = 100
"""Strength of the unsharp mask (radius 1) that stands in for the data set's Gaussian sharpening (step 4): the
smallest accuracy drop (chosen on validation images made into photos: docs/photos.md)."""
WORK_SIZE = 128
"""Bigger images are area-reduced to this longest edge before the garment is looked for (4.6 times the output's
size), and JPEGs are decoded at reduced size down to it (``Image.draft``): about as accurate as 256 pixels at a
third of the CPU time (chosen on the development photos: docs/photos.md)."""


def fashion_mnist_style(img: Image.Image) -> np.ndarray:
    """A uint8 (28, 28) Fashion-MNIST-style array: bright garment, centred, on a black background.

    A 28x28 image with a dark border is returned unchanged, so Fashion-MNIST images pass through byte for byte.
    Otherwise the photo is reduced to at most 128 pixels, the garment is found (:func:`find_garment`: outline,
    holes filled, a wearer's skin left out), everything else is set to black, and grey levels are negated when
    the background is light (a product photo). The garment's box is resized so that its longest edge is 28,
    centred on a black 28x28 canvas the way the data set's images are (an odd leftover pixel goes top/left),
    sharpened, and stretched so that its brightest pixel is 255 (:func:`_finish`).
    """
    return styled(img)[0]


class Converted(NamedTuple):
    """A photo converted for a model: what :func:`fashionzoo.photos.convert.read_photo` gives."""

    pixels: np.ndarray
    """uint8 (28, 28)."""
    scene: str | None
    """:data:`fashionzoo.photos.calibration.SCENES`; None for an image in the data set's format, passed through."""
    garments: int = 1
    """Separate garments found (:attr:`fashionzoo.photos.segmentation.Garment.garments`)."""


def styled(img: Image.Image) -> Converted:
    """:func:`fashion_mnist_style`'s pixels, the photo's scene and how many separate garments it shows."""
    if in_data_set_format(img):
        return Converted(np.clip(np.rint(to_grayscale(img)), 0, 255).astype(np.uint8), None)
    base = to_8bit(img)
    rgb = _reduced(np.asarray(base if base.mode == "RGB" else base.convert("RGB")))
    gray = cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2GRAY)
    background = border_colour(rgb)
    dark = float(to_luma(background)) < 128
    mask, scene, garments = find_garment(rgb, background)
    canvas = np.zeros((SIZE, SIZE), dtype=np.uint8)
    if not mask.any():
        return Converted(canvas, scene, garments)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    garment = (gray if dark else 255.0 - gray) * mask
    crop = np.ascontiguousarray(garment[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], dtype=np.float32)
    new_width, new_height = fitted_size(crop.shape[0], crop.shape[1], SIZE)
    small = np.asarray(Image.fromarray(crop).resize((new_width, new_height), _RESAMPLE))
    top, left = (SIZE - new_height + 1) // 2, (SIZE - new_width + 1) // 2
    canvas[top : top + new_height, left : left + new_width] = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    return Converted(_finish(canvas), scene, garments)


def _reduced(rgb: np.ndarray) -> np.ndarray:
    """The photo area-averaged down to :data:`WORK_SIZE` pixels on its longest edge (smaller ones unchanged), by
    OpenCV: the average Pillow's BOX takes, 4 times faster here."""
    height, width = rgb.shape[:2]
    if max(height, width) <= WORK_SIZE:
        return rgb
    return cv2.resize(rgb, fitted_size(height, width, WORK_SIZE), interpolation=cv2.INTER_AREA)


def _finish(canvas: np.ndarray) -> np.ndarray:
    """The data set's last touches on a non-blank 28x28 canvas: sharpening (its step 4) and full contrast.

    Every Fashion-MNIST training image reaches 254 or 255, while a photo's garment, averaged down from many
    pixels, rarely does: the result is stretched so that its brightest pixel is 255 (what that gains on validation
    images made into photos: docs/photos.md).
    """
    sharpened = Image.fromarray(canvas).filter(ImageFilter.UnsharpMask(radius=1, percent=_SHARPEN_PERCENT, threshold=0))
    pixels = np.asarray(sharpened, dtype=np.float32)
    if pixels.max() == 0:  # a garment with the background's brightness (only its colour differs)
        return canvas
    return np.clip(np.rint(pixels * (255.0 / pixels.max())), 0, 255).astype(np.uint8)


def in_data_set_format(img: Image.Image) -> bool:
    """Whether ``img`` is already in the data sets' format: 28x28 on a dark background (the median of its outermost
    ring of pixels below 128). Both pipelines pass such an image through unchanged, and ``predict`` does not treat
    it as a photo."""
    return img.size == (SIZE, SIZE) and border_level(to_grayscale(img)) < 128


def border_level(gray: np.ndarray) -> float:
    """The median grey level of the outermost ring of pixels of a grayscale image."""
    return float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
