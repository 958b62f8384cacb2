"""The run record's JSON types, checked when ``metrics.json`` is read (pydantic, strict): every field of
:class:`~fashionzoo.training.runs.RunRecord` of its declared type (read from the dataclass itself), and the figures a
release publishes (test accuracy, loss and size, the photo figures, the ONNX latency) present, finite and in range.
Imported lazily by :mod:`fashionzoo.training.runs`, so that reading no record costs no pydantic import."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from fashionzoo.core.errors import FashionZooError

Record = TypeVar("Record")

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class TestFigures(TypedDict):
    """What a release publishes of ``test`` (other keys are kept as written)."""

    accuracy: Fraction
    loss: NonNegative
    n: Annotated[int, Field(ge=1)]


class PhotoFigures(TypedDict, total=False):
    """The held-out senders' figures a release publishes, and the uncertain threshold it keeps."""

    phone_balanced_accuracy: float  # NaN when a --limit left no phone photo among the held-out ones
    auroc_in_vs_out_of_class: float
    auroc_right_vs_wrong: float
    uncertain_below: Fraction


class Latency(TypedDict):
    """The ONNX latency a release measured and publishes."""

    p50_ms: NonNegative


@functools.cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def checked_record(record_type: type[Record], known: dict[str, Any], source: Path) -> Record:
    """A ``record_type`` (:class:`~fashionzoo.training.runs.RunRecord`, passed in by its module) made of ``known``
    (the fields this version knows), or a one-line refusal naming the first field of another type (``"params":
    "many"``) or a published figure missing or out of range (``"test": {}``)."""
    parts: list[tuple[str, Any, Any]] = [("", record_type, known), ("test.", TestFigures, known.get("test"))]
    if known.get("photos") is not None:
        parts.append(("photos.", PhotoFigures, known["photos"]))
    if known.get("onnx_latency") is not None:
        parts.append(("onnx_latency.", Latency, known["onnx_latency"]))
    checked = []
    for prefix, kind, value in parts:
        try:
            checked.append(_adapter(kind).validate_json(json.dumps(value), strict=True))
        except ValidationError as error:
            first = error.errors()[0]
            where = prefix + ".".join(map(str, first["loc"])) if first["loc"] else prefix.rstrip(".") or "the record"
            raise FashionZooError(
                f"{source}: not a fashionzoo run record ({where}: {first['msg'].lower()}); train the model "
                "again into this folder"
            ) from None
    return checked[0]
