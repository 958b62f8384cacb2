"""The JSON the API answers, as pydantic models: they describe the responses in the OpenAPI document (for client
generators); the answers themselves are written as ``predict --json`` writes its lines."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Ranked(BaseModel):
    label: str
    class_id: int
    probability: float


class Result(BaseModel):
    """One image: exactly its ``predict --json`` line (a prediction, or ``file`` and ``error``), plus ``input_png``
    when asked for. Its fields are exactly those ``predict --json`` can write (no others are accepted)."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="The upload's file name.")
    file_base64: str | None = Field(None, description="The name's exact bytes, when they are not UTF-8.")
    label: str | None = None
    class_id: int | None = None
    probability: float | None = None
    uncertain: bool | None = Field(
        None, description="The top probability is below the model's threshold, or the photo shows several garments."
    )
    top_k: list[Ranked] | None = None
    uncertain_reason: str | None = Field(
        None, description="Why the result is uncertain whatever its probability (a photo of three or more garments)."
    )
    error: str | None = Field(None, description="Why this image could not be classified (one line).")
    input_png: str | None = Field(None, description="With inputs=true: the 28x28 image the model saw, a base64 PNG.")


class Predictions(BaseModel):
    model: str = Field(description="The model that classified the images (its full name).")
    results: list[Result] = Field(description="One per uploaded image, in the order sent.")


class Refusal(BaseModel):
    error: str = Field(description="One line: what was wrong and what to do.")
    results: list[Result] | None = Field(None, description="With 422 for failed images: every image's result.")


class ModelList(BaseModel):
    default: str = Field(description="The model used when a request names none.")
    models: list[dict[str, Any]] = Field(description="Each servable model as 'fashionzoo info --json' describes it.")


class Health(BaseModel):
    status: str
    version: str
