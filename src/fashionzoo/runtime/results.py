"""What classifying a file gives: a :class:`Prediction` or a :class:`Failure`."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from fashionzoo.core.errors import FashionZooError, os_reason
from fashionzoo.core.files import atomic_path


@dataclass(frozen=True)
class Prediction:
    """The classification of one image file: best class and the ``top_k`` best (label, probability) pairs, with
    their class ids in ``top_k_class_ids``."""

    file: str
    class_id: int
    label: str
    probability: float
    top_k: tuple[tuple[str, float], ...]
    uncertain: bool = False
    model_input: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The uint8 (28, 28) image the model saw."""
    top_k_class_ids: tuple[int, ...] = field(kw_only=True)
    uncertain_reason: str | None = field(default=None, kw_only=True)
    """Why the prediction is uncertain whatever its probability (a photo of several separate garments), or None."""

    def result_fields(self) -> dict[str, Any]:
        """The classification as JSON-ready fields (label, class_id, probability, uncertain, top_k), without the
        file: the ``predict --json`` line and the prediction files' rows name it each in their own way."""
        return {
            "label": self.label,
            "class_id": self.class_id,
            "probability": self.probability,
            "uncertain": self.uncertain,
            "top_k": [
                {"label": label, "class_id": class_id, "probability": p}
                for (label, p), class_id in zip(self.top_k, self.top_k_class_ids, strict=True)
            ],
        }

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``predict --json`` line), the file named as :func:`_file_fields` does."""
        reason = {"uncertain_reason": self.uncertain_reason} if self.uncertain_reason else {}
        return {**_file_fields(self.file), **self.result_fields(), **reason}

    def model_input_png(self) -> bytes:
        """The image the model saw, as the bytes of a PNG file (28x28, 8-bit grey) marked as fashionzoo's."""
        if self.model_input is None:
            raise FashionZooError(f"{self.file}: no model input kept for this prediction")
        mark = PngInfo()
        mark.add_text(SAVED_INPUT_KEY, SAVED_INPUT_VALUE)
        buffer = io.BytesIO()
        Image.fromarray(self.model_input).save(buffer, format="PNG", pnginfo=mark)
        return buffer.getvalue()

    def save_model_input(self, folder: str | os.PathLike) -> Path:
        """Write the image the model saw as a PNG under ``folder``, at :func:`saved_input_path` (``a/shirt.jpg``
        gives ``folder/a/shirt.jpg.png``), whole or not at all, marked as fashionzoo's. A file already there that
        fashionzoo did not save (a user's image) is never replaced: a one-line error for this input."""
        png = self.model_input_png()
        target = saved_input_path(folder, self.file)
        if os.path.isfile(target) and not os.path.islink(target) and not _saved_by_us(target):  # others: atomic_path
            raise FashionZooError(
                f"{target}: already exists and is not a model input fashionzoo saved; it is left as it is: "
                "save the inputs into another folder"
            )
        try:
            with atomic_path(target, suffix=".png") as tmp:
                tmp.write_bytes(png)
        except OSError as error:
            raise FashionZooError(f"{target}: cannot write the model input ({os_reason(error)})") from None
        return target


SAVED_INPUT_KEY, SAVED_INPUT_VALUE = "Software", "fashionzoo predict --save-inputs"
"""The PNG text chunk that marks a model input saved by fashionzoo: only such a file is ever replaced."""
NAME_MAX = 255 - 32
"""The longest saved name, in bytes: the usual file systems' 255 (ext4, XFS, APFS), less room for the temporary name
it is first written under (:func:`fashionzoo.core.files.atomic_path`: a dot, a process id and 8 characters more)."""
_HASHED = 16
"""Hex digits of SHA-256 that stand for the cut part of a name too long to save under."""


def saved_input_path(folder: str | os.PathLike, file: str) -> Path:
    """Where ``--save-inputs`` puts the model input of ``file``: its path under ``folder`` with ``.png`` added. One
    input, one name: ``%`` is written ``%25``, a ``..`` part ``%2E%2E`` (never a way out of ``folder``), an absolute
    path goes under ``%2F``; a part too long for a file name keeps its start and ends with a hash of the whole. A
    name with no part at all (``""``, ``"."``) is a one-line error."""
    source = Path(file)
    parts = source.parts[1:] if source.is_absolute() else source.parts
    escaped = [part.replace("%", "%25") if part != ".." else "%2E%2E" for part in parts]
    if source.is_absolute():  # added after the escaping: a relative first part spelt %2F is written %252F
        escaped.insert(0, "%2F")
    if not escaped:
        raise FashionZooError(f"{file or '(an empty name)'}: names no file to save a model input for; name a file")
    escaped[-1] += ".png"
    return Path(folder, *(_fitted(part) for part in escaped))


def _fitted(part: str) -> str:
    """``part`` if it fits in :data:`NAME_MAX` bytes, else its start, ``~`` and :data:`_HASHED` hex digits of its
    SHA-256 (and its ``.png``): distinct long names stay distinct."""
    raw = os.fsencode(part)
    if len(raw) <= NAME_MAX:
        return part
    ending = ".png" if part.endswith(".png") else ""
    digest = hashlib.sha256(raw).hexdigest()[:_HASHED]
    start = part
    while len(os.fsencode(start)) > NAME_MAX - len(ending) - 1 - _HASHED:  # whole characters, never half of one
        start = start[:-1]
    return start + "~" + digest + ending


def _saved_by_us(path: Path) -> bool:
    """Whether ``path`` is a PNG that :meth:`Prediction.save_model_input` wrote (its text chunk, read before the
    pixels)."""
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.info.get(SAVED_INPUT_KEY) == SAVED_INPUT_VALUE
    except Exception:  # anything Pillow cannot open is not ours
        return False


@dataclass(frozen=True)
class Failure:
    """A file (or command-line input) that could not be classified, with a one-line reason naming it."""

    file: str
    error: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``predict --json`` line of a file that failed): ``file`` and ``error``."""
        return {**_file_fields(self.file), "error": self.error}


def name_base64(file: str) -> str | None:
    """The exact bytes of a file name that is not UTF-8 (its undecodable bytes held as lone surrogates,
    surrogateescape), base64-encoded, to find the file again; None for a UTF-8 name."""
    name = os.fsencode(file)
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(name).decode("ascii")
    return None


def _file_fields(file: str) -> dict[str, str]:
    """``file`` for a JSON line. A name that is not UTF-8 comes with U+FFFD for the undecodable bytes, plus
    ``file_base64`` (:func:`name_base64`)."""
    exact = name_base64(file)
    if exact is None:
        return {"file": file}
    return {"file": os.fsencode(file).decode("utf-8", "replace"), "file_base64": exact}
