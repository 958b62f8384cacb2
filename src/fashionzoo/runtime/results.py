"""What classifying a file gives: a :class:`Prediction` or a :class:`Failure`."""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fashionzoo.core.errors import FashionZooError
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
        """The image the model saw, as the bytes of a PNG file (28x28, 8-bit grey)."""
        if self.model_input is None:
            raise FashionZooError(f"{self.file}: no model input kept for this prediction")
        buffer = io.BytesIO()
        Image.fromarray(self.model_input).save(buffer, format="PNG")
        return buffer.getvalue()

    def save_model_input(self, folder: str | os.PathLike) -> Path:
        """Write the image the model saw as a PNG under ``folder``, named after the input: its path (relative, or
        absolute without the leading ``/``) with ``.png`` added, so ``a/shirt.jpg`` gives ``folder/a/shirt.jpg.png``.
        The file appears whole or not at all."""
        source = Path(self.file)
        relative = source.relative_to(source.anchor) if source.is_absolute() else source
        parts = [part for part in relative.parts if part != ".."]
        target = Path(folder, *parts[:-1], parts[-1] + ".png")
        try:
            with atomic_path(target, suffix=".png") as tmp:
                tmp.write_bytes(self.model_input_png())
        except OSError as error:
            raise FashionZooError(f"{target}: cannot write the model input ({error.strerror or error})") from None
        return target


@dataclass(frozen=True)
class Failure:
    """A file (or command-line input) that could not be classified, with a one-line reason naming it."""

    file: str
    error: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``predict --json`` line of a file that failed): ``file`` and ``error``."""
        return {**_file_fields(self.file), "error": self.error}


def _file_fields(file: str) -> dict[str, str]:
    """``file`` for a JSON line. A name that is not UTF-8 comes with U+FFFD for the undecodable bytes, plus
    ``file_base64``: the name's exact bytes, to find the file again."""
    name = os.fsencode(file)
    readable = name.decode("utf-8", "replace")
    if readable == file:
        return {"file": file}
    # the name's undecodable bytes arrived as lone surrogates (surrogateescape)
    return {"file": readable, "file_base64": base64.b64encode(name).decode("ascii")}
