"""Turn an ordinary product photo into a Fashion-MNIST-style 28x28 image.

The steps follow the data set's own conversion (Xiao et al. 2017, arXiv:1708.07747, section 2), with the trim
of even borders replaced by a garment mask that copes with real photos (:mod:`fashionzoo.photos.segmentation`): keep
the garment only, resize its longest edge to 28 pixels, extend the shortest edge to 28 and centre, sharpen,
negate so that the background is dark, and keep 8-bit grayscale stretched to full contrast (as every training
image is). The standard library, numpy, Pillow and OpenCV are used, so this module works without TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps

from fashionzoo.core.errors import FashionZooError
from fashionzoo.data.datasets import DATASETS, DEFAULT_TAG, PIPELINES, InputSpec
from fashionzoo.photos.decode import DIGIT_DECODE_SIZE, EXIF_ORIENTATION, decode_image, load_image
from fashionzoo.photos.garment import WORK_SIZE, Converted, in_data_set_format, styled


@dataclass(frozen=True)
class ImageBytes:
    """An image file held in memory (an upload), named ``name`` in results and errors: classified as a file of that
    name would be, and never written to disk."""

    name: str
    data: bytes = b""


def convert_file(
    path: str | os.PathLike | ImageBytes, pipeline: str = "fashion-mnist"
) -> tuple[np.ndarray, str | None]:
    """Load an image file (a large JPEG at reduced size; or one held in memory) and convert it with
    :func:`convert_image`."""
    pixels, scene, _ = read_photo(path, pipeline)
    return pixels, scene


def read_photo(path: str | os.PathLike | ImageBytes, pipeline: str = "fashion-mnist") -> Converted:
    """:func:`convert_file`, with how many separate garments the photo shows (``predict`` marks a photo of several
    uncertain). An :class:`ImageBytes` gets the same decoding, limits, reasons and pixels as the file would."""
    _check_pipeline(pipeline)
    if isinstance(path, ImageBytes):
        return _converted(decode_image(path.data, path.name, _decode_size(pipeline)), pipeline)
    return _converted(load_image(path, _decode_size(pipeline)), pipeline)


def _decode_size(pipeline: str) -> int:
    """The longest edge a JPEG is decoded down to for ``pipeline`` (digits are not segmented)."""
    return DIGIT_DECODE_SIZE if pipeline == "mnist" else WORK_SIZE


def convert_image(img: Image.Image, pipeline: str = "fashion-mnist") -> tuple[np.ndarray, str | None]:
    """Convert an image with the named pipeline (a weights' ``InputSpec.pipeline``): :func:`fashion_mnist_style`
    for clothing, :func:`fashionzoo.photos.digits.mnist_style` for handwritten digits. Returns the 28x28 pixels and
    the photo's scene (:data:`fashionzoo.photos.calibration.SCENES`: what its garment was found on; ``plain`` for a
    photo of a digit; None for an image already :func:`in_data_set_format`, passed through): what
    ``Classifier.predict_probs(pixels, scenes=...)`` takes to read a photo as ``predict`` does. An image that still
    carries an EXIF orientation (opened directly, not by :func:`load_image`) is turned upright first."""
    _check_pipeline(pipeline)
    if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img)
    pixels, scene, _ = _converted(img, pipeline)
    return pixels, scene


def _converted(img: Image.Image, pipeline: str) -> Converted:
    """:func:`convert_image` for an upright image and a known pipeline (what :func:`load_image` gives
    :func:`convert_file`: no second EXIF lookup or pipeline check per file)."""
    if pipeline == "mnist":
        from fashionzoo.photos.digits import mnist_style

        return Converted(mnist_style(img), None if in_data_set_format(img) else "plain")
    return styled(img)


@contextlib.contextmanager
def forkable() -> Iterator[None]:
    """OpenCV on one thread in this process for the block, so that processes forked in it can convert photos. Keep
    the block to the forks: the process's own OpenCV calls run on one thread inside it.

    OpenCV's thread pool is not fork-safe (opencv/opencv#5150): a child forked while one of the parent's pool threads
    held its lock waits for that lock forever at its first parallel call (a loading process hung so in a CI run, in
    :mod:`fashionzoo.photos.segmentation` on a machine under load). Going to one thread joins the pool's threads
    when no other thread of the process is inside a parallel OpenCV call, and the children inherit one thread (no
    slower end to end: docs/photos.md, "Speed"). The thread count this process had is restored at the end."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def _check_pipeline(pipeline: str) -> None:
    if pipeline not in PIPELINES:
        raise FashionZooError(f"unknown preprocessing pipeline {pipeline!r} (expected one of {', '.join(PIPELINES)})")


def preprocess_file(path: str | os.PathLike, pipeline: str = "fashion-mnist") -> np.ndarray:
    """The 28x28 pixels of an image file after the named pipeline (:func:`convert_file`)."""
    return convert_file(path, pipeline)[0]


def to_model_input(images: np.ndarray, spec: InputSpec = DATASETS[DEFAULT_TAG].input) -> np.ndarray:
    """Scale uint8 images, (N, H, W), (N, H, W, 1) or a single (H, W), to the float32 (N, H, W, 1) input ``spec``
    describes (``pixel * spec.scale``). Anything else is refused in one line: floats (already scaled or not, they
    would be scaled again) and images of another size (photos go through :func:`convert_image` first)."""
    array = np.asarray(images)
    if array.ndim == 2:
        array = array[np.newaxis]
    elif array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3 or array.shape[1:] != (spec.height, spec.width) or spec.channels != 1:
        raise FashionZooError(
            f"expected images of shape (N, {spec.height}, {spec.width}), got {array.shape}; "
            "convert other images with fashionzoo.photos.convert.convert_image first"
        )
    if array.dtype != np.uint8:
        raise FashionZooError(f"expected uint8 images (grey levels 0-255), got {array.dtype}")
    return (array.astype(np.float32) / np.float32(1.0 / spec.scale))[..., np.newaxis]  # as training divided
