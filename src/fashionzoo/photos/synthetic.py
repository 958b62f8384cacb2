"""Synthetic product photos made from Fashion-MNIST images: the data set's pipeline run backwards.

Used to measure how well ``predict`` copes with ordinary photos (white background, colour, large, uneven
margins, JPEG, transparency) and to make the example images. numpy, Pillow and OpenCV only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

TINT = np.array([1.2, 0.9, (1 - 0.299 * 1.2 - 0.587 * 0.9) / 0.114])
"""A colour tint whose luma equals the original grey level (so a tinted garment keeps its grey values)."""
_ALPHA_OF_DARKNESS = np.clip(np.arange(256) * 8, 0, 255).astype(np.uint8)
"""A cut-out's opacity by how far a pixel's darkest channel is from white: eight times that, at most 255."""


def as_photo(garment: np.ndarray, scale: float, margins: tuple[int, int, int, int]) -> Image.Image:
    """A product-photo-like RGB image: the garment negated onto white, tinted, upscaled, with uneven margins."""
    rgb = np.clip(255.0 - garment[..., np.newaxis] * TINT, 0, 255).astype(np.uint8)
    side = round(garment.shape[0] * scale)
    item = Image.fromarray(rgb).resize((side, side), Image.Resampling.BICUBIC)
    left, right, top, bottom = margins
    photo = Image.new("RGB", (side + left + right, side + top + bottom), (255, 255, 255))
    photo.paste(item, (left, top))
    return photo


def random_photo(garment: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """:func:`as_photo` upscaled 6-20x with random uneven white margins."""
    top, right, bottom, left = (int(m) for m in rng.integers(5, 200, 4))
    return as_photo(garment, rng.uniform(6, 20), (top, right, bottom, left))


def cut_out(photo: Image.Image) -> Image.Image:
    """The photo as RGBA with a transparent background whose hidden colour is black (a common cut-out export)."""
    red, green, blue = cv2.split(np.asarray(photo))  # OpenCV: ten times numpy's speed on these 8-bit planes
    alpha = cv2.LUT(255 - cv2.min(cv2.min(red, green), blue), _ALPHA_OF_DARKNESS)
    opaque = (alpha > 0).astype(np.uint8)
    return Image.fromarray(cv2.merge([red * opaque, green * opaque, blue * opaque, alpha]), "RGBA")


def save_variants(photo: Image.Image, folder: Path, stem: str) -> list[Path]:
    """The photo saved as PNG, JPEG and transparent PNG."""
    paths = [folder / f"{stem}.png", folder / f"{stem}.jpg", folder / f"{stem}_cutout.png"]
    photo.save(paths[0], compress_level=1)  # lossless either way; level 1 encodes large photos several times faster
    photo.save(paths[1], quality=90)
    cut_out(photo).save(paths[2], compress_level=1)
    return paths


FORMATS = ("png", "jpeg", "transparent png")


def photo_accuracy(classifier: Any, images: np.ndarray, labels: np.ndarray, folder: Path, seed: int = 0) -> dict:
    """Accuracy of a :class:`fashionzoo.runtime.classifier.Classifier` on raw images and on photos made from them.

    Every image becomes a random photo saved in each of :data:`FORMATS`, then goes through the same path as
    ``fashionzoo predict`` (file -> preprocessing -> model). Returns accuracies by format and ``"raw"``.
    """
    rng = np.random.default_rng(seed)
    paths: dict[str, list[Path]] = {fmt: [] for fmt in FORMATS}
    for index, image in enumerate(images):
        for fmt, path in zip(FORMATS, save_variants(random_photo(image, rng), folder, f"photo{index}"), strict=True):
            paths[fmt].append(path)
    result = {"raw": float((classifier.predict_probs(images).argmax(1) == labels).mean()), "n": int(len(labels))}
    for fmt, files in paths.items():
        predicted = [p.class_id if hasattr(p, "class_id") else -1 for p in classifier.classify(files)]
        result[fmt] = float((np.array(predicted) == labels).mean())
    return result
