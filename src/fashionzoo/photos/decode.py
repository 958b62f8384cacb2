"""Reading an image file of any mode into 8-bit pixels, with the bomb limits of ``predict``."""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
from pathlib import Path
from typing import IO, cast

import numpy as np
from PIL import IcoImagePlugin, Image, ImageOps, UnidentifiedImageError

from fashionzoo.core.errors import FashionZooError, reason

MAX_PIXELS = 40_000_000
"""Largest image (width x height) that :func:`load_image` decodes; bigger ones are refused as possible bombs."""
_READ_WHOLE = 1 << 22
"""Files up to this size (4 MiB) are read in one call and decoded from memory: Pillow reads a JPEG's headers in
dozens of small reads (measured on the development photos: docs/photos.md)."""
DIGIT_DECODE_SIZE = 512
"""JPEGs of handwritten digits are decoded at reduced size down to this (they are not segmented)."""
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""ITU-R 601-2 luma weights, the ones Pillow's ``convert("L")`` uses."""
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_GRAY_16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
EXIF_ORIENTATION = 0x0112
"""The EXIF tag of how a camera held the photo."""
_ICO_MAGIC, _PNG_MAGIC = b"\x00\x00\x01\x00", b"\x89PNG\r\n\x1a\n"
_BLOCK_PIXELS = 1 << 20
"""Pixels converted at a time from 16/32-bit to 8-bit: converting a whole 40-megapixel image at once took ~1 GB."""


def load_image(path: str | os.PathLike, min_size: int | None = None) -> Image.Image:
    """Open and fully decode an image file (first frame, EXIF orientation applied).

    With ``min_size``, a JPEG is decoded at the smallest of 1/1, 1/2, 1/4 or 1/8 of its size whose longest edge
    is still at least ``min_size`` (``Image.draft``: several times faster for large photos).

    Raises :class:`FashionZooError` with a one-line message for any file that cannot be used: missing, a folder,
    empty, unreadable, not an image, truncated or corrupt, or larger than :data:`MAX_PIXELS`.
    """
    name = os.fspath(path)
    file = Path(name)
    try:
        if file.is_dir():
            raise FashionZooError(f"{name}: is a folder, not an image file")
        if not file.exists():
            broken = "a broken or looping symbolic link" if file.is_symlink() else "no such file"
            raise FashionZooError(f"{name}: {broken} (check the path)")
        size = file.stat().st_size
        if size == 0:
            raise FashionZooError(_empty(name))
        with open(file, "rb") as handle:
            source = io.BytesIO(handle.read()) if size <= _READ_WHOLE else _CappedReader(handle)
            return _decode(cast(IO[bytes], source), name, min_size)
    except FashionZooError:
        raise
    except PermissionError:
        raise FashionZooError(f"{name}: permission denied (make the file readable)") from None
    except Exception as exc:
        raise _unusable(name, exc) from None


def decode_image(data: bytes, name: str, min_size: int | None = None) -> Image.Image:
    """An image file's bytes held in memory (an upload), decoded as :func:`load_image` decodes a file: the same
    limits and the same one-line reasons, naming the file ``name``."""
    if not data:
        raise FashionZooError(_empty(name))
    try:
        return _decode(io.BytesIO(data), name, min_size)
    except FashionZooError:
        raise
    except Exception as exc:
        raise _unusable(name, exc) from None


def _decode(source: IO[bytes], name: str, min_size: int | None) -> Image.Image:
    """:func:`load_image`'s decoding of an open source: size checked against :data:`MAX_PIXELS` before the pixels
    are decoded, the first frame, a JPEG drafted down to ``min_size``, EXIF orientation applied."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for width, height in _icon_frame_sizes(source):
            if width * height > MAX_PIXELS:
                raise FashionZooError(_too_big(name, f"{width}x{height} pixels (a frame of the icon)"))
        img = Image.open(source)  # not closed: that would free the decoded pixels (the file is closed by the caller)
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise FashionZooError(_too_big(name, f"{width}x{height} pixels"))
        img.seek(0)
        if min_size is not None:
            shrink = min_size / max(width, height)
            img.draft(None, (max(1, math.ceil(width * shrink)), max(1, math.ceil(height * shrink))))
        img.load()
        if img.mode == "F":
            _check_finite(name, img)
        ImageOps.exif_transpose(img, in_place=True)  # no copy of the pixels when there is nothing to turn
        return img


def _empty(name: str) -> str:
    return f"{name}: the file is empty (0 bytes); re-save or re-download it"


def _unusable(name: str, exc: Exception) -> FashionZooError:
    """The one-line reason an image that :func:`_decode` raised ``exc`` for cannot be used."""
    if isinstance(exc, UnidentifiedImageError):
        return FashionZooError(f"{name}: not an image Pillow can read (is it a PNG/JPEG/WebP/GIF/BMP/TIFF?)")
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return FashionZooError(_too_big(name, "far too many pixels"))
    if isinstance(exc, MemoryError):
        return FashionZooError(f"{name}: not enough memory to decode this image; downscale it first")
    # Pillow's decoders raise OSError, ValueError, SyntaxError, EOFError, struct.error...
    return FashionZooError(f"{name}: the image data is truncated or corrupt ({reason(exc)}); re-save or re-download it")


def _icon_frame_sizes(source: IO[bytes]) -> list[tuple[int, int]]:
    """The real sizes of the PNG frames of an ICO file, read from their headers alone (none for another format).
    Pillow decodes an icon's largest frame as it opens the file, trusting the directory's size (at most 256x256):
    an 8000x8000 PNG inside took 376 MB before any size could be checked."""
    if source.read(4) != _ICO_MAGIC:
        source.seek(0)
        return []
    source.seek(0)
    sizes = []
    seen: set[int] = set()
    for entry in IcoImagePlugin.IcoFile(source).entry:
        if entry.offset in seen:  # many entries may point at one frame: its header is read once
            continue
        seen.add(entry.offset)
        source.seek(entry.offset)
        head = source.read(24)  # the signature and the IHDR chunk's start: never the chunks after it
        if head[:8] == _PNG_MAGIC and head[12:16] == b"IHDR" and len(head) == 24:
            sizes.append(cast(tuple[int, int], struct.unpack(">II", head[16:24])))
    source.seek(0)
    return sizes


def _check_finite(name: str, img: Image.Image) -> None:
    """Refuse a float image with NaN or infinite pixels: they have no grey level (it was called a blank image)."""
    undefined = int(np.count_nonzero(~np.isfinite(np.asarray(img))))
    if undefined:
        raise FashionZooError(
            f"{name}: {undefined:,} of {img.width * img.height:,} pixels are NaN or infinite (a float image with "
            "undefined values, not a blank one); fix those pixels or save the image as 8-bit"
        )


class _CappedReader:
    """A binary file whose ``read(n)`` never asks for more bytes than are left in the file.

    Pillow reads some chunks whole with the length their header declares (the rest of a PNG ``IDAT`` chunk, a
    4-byte field), and Python's ``read(n)`` allocates ``n`` bytes before reading: a 128-byte corrupt PNG made it
    allocate ~4 GB, and fail with "not enough memory" under a memory limit. Everything else is the file's own.
    Files up to :data:`_READ_WHOLE` are decoded from an ``io.BytesIO`` instead, whose ``read(n)`` is bounded by
    what is left in the same way.
    """

    def __init__(self, handle) -> None:  # an open binary file (no typing import: see test_preprocessing)
        self._handle = handle
        self._size = os.fstat(handle.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(self._size - self._handle.tell(), 0))
            if size == 0:
                return b""
        return self._handle.read(size)

    def __getattr__(self, name: str) -> object:
        return getattr(self._handle, name)


def _too_big(name: str, size: str) -> str:
    """The message for an image over :data:`MAX_PIXELS`."""
    return (
        f"{name}: the image is {size}, over the {MAX_PIXELS // 1_000_000}-megapixel limit "
        "(possible decompression bomb); downscale it first"
    )


def to_8bit(img: Image.Image) -> Image.Image:
    """The image as 8-bit ``L`` or ``RGB``; transparency is composited on white (product photos are on white)."""
    mode = img.mode
    if mode in ("1", "L") and "transparency" not in img.info:
        return img if mode == "L" else img.convert("L")
    if mode in _GRAY_16_MODES or mode in ("I", "F"):
        return Image.fromarray(_scale_to_8bit(np.asarray(img), mode))
    if mode in ("LA", "La") or (mode in ("1", "L") and "transparency" in img.info):
        gray_alpha = img.convert("LA")
        canvas = Image.new("L", img.size, 255)
        canvas.paste(gray_alpha.getchannel("L"), mask=gray_alpha.getchannel("A"))
        return canvas
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img if mode == "RGBA" else img.convert("RGBA")
        canvas = Image.new("RGB", img.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba)
        return canvas
    return img if mode == "RGB" else img.convert("RGB")


def _scale_to_8bit(values: np.ndarray, mode: str) -> np.ndarray:
    """Map 16-bit, 32-bit integer or float pixels to uint8.

    16-bit modes are divided by 257 (65535 -> 255). For ``I`` and ``F`` the actual range decides: values in
    [0, 1] (float) are scaled by 255, values in [0, 255] are kept, values in [0, 65535] are divided by 257 and
    anything else is stretched from its minimum to its maximum. The pixels are converted in blocks of rows
    (:data:`_BLOCK_PIXELS`), so the float64 temporaries stay small whatever the image size.
    """
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    out = np.empty(values.shape, dtype=np.uint8)
    width = values.shape[1] if values.ndim > 1 else 1
    step = max(1, _BLOCK_PIXELS // max(width, 1))
    for start in range(0, len(values), step):
        data = values[start : start + step].astype(np.float64)
        if mode in _GRAY_16_MODES:
            data = data / 257.0
        elif mode == "F" and low >= 0.0 and high <= 1.0:
            data = data * 255.0
        elif low >= 0.0 and high <= 255.0:
            pass
        elif low >= 0.0 and high <= 65535.0:
            data = data / 257.0
        else:
            data = (data - low) * (255.0 / (high - low)) if high > low else np.zeros_like(data)
        out[start : start + step] = np.clip(np.rint(np.nan_to_num(data)), 0, 255).astype(np.uint8)
    return out


def _channels(img: Image.Image) -> np.ndarray:
    """Float32 HxWxC pixels (C = 1 or 3) of an ``L`` or ``RGB`` image."""
    pixels = np.asarray(img).astype(np.float32)
    return pixels[..., np.newaxis] if pixels.ndim == 2 else pixels


def to_luma(pixels: np.ndarray) -> np.ndarray:
    """Grayscale from pixels whose last axis holds 1 or 3 channels."""
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels @ _LUMA


def to_grayscale(img: Image.Image) -> np.ndarray:
    """Float32 HxW grayscale in [0, 255] for an image of any mode (transparency composited on white)."""
    return to_luma(_channels(to_8bit(img)))
