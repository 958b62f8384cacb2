"""One model of the zoo: :class:`ModelEntry`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fashionzoo.data.datasets import DATASETS, DEFAULT_TAG, InputSpec, full_name
from fashionzoo.registry.specs import Recipe, WeightsRecord


@dataclass(frozen=True)
class ModelEntry:
    """One model of the zoo."""

    name: str
    aliases: tuple[str, ...]
    family: str
    reference: str
    description: str
    builder: str  # a function of fashionzoo.models
    build_kwargs: dict[str, Any]
    params: int  # parameter count of the registered architecture (before a search chooses widths)
    recipe: Recipe
    reported: dict[str, float] = field(default_factory=dict)  # tag -> what the reference experiment reported
    targets: dict[str, float] = field(default_factory=dict)  # tag -> what our checkpoint must reach on the test file
    needs_backbone_weights: bool = False
    unreleased_reason: str = ""  # why no checkpoint is released yet, when one could be expected
    test_time_flip: bool = False  # predictions average the image and its mirror image (Keras and ONNX graphs)
    tags: tuple[str, ...] = (DEFAULT_TAG,)  # the data sets this model is trained on, each a weights tag
    tag_recipes: dict[str, Recipe] = field(default_factory=dict)  # a tag's own recipe, where ``recipe`` falls short
    tag: str = DEFAULT_TAG  # which of them this entry's weights, classes and preprocessing belong to
    weights: WeightsRecord | None = None

    @property
    def full_name(self) -> str:
        """``name`` for the default tag, else ``name.tag`` (``cnn-small.mnist``): what a user types to get these
        weights, and the name of their files and Hub repo."""
        return full_name(self.name, self.tag)

    def __hash__(self) -> int:  # the generated hash fails on the dict fields: entries hash by their full name
        return hash(self.full_name)

    @property
    def classes(self) -> tuple[str, ...]:
        return DATASETS[self.tag].classes

    @property
    def input_spec(self) -> InputSpec:
        return DATASETS[self.tag].input

    @property
    def full_aliases(self) -> tuple[str, ...]:
        """The aliases, with ``.tag`` for these weights off the default tag (``cnn-b.mnist``)."""
        suffix = "" if self.tag == DEFAULT_TAG else f".{self.tag}"
        return tuple(f"{alias}{suffix}" for alias in self.aliases)

    @property
    def why_unreleased(self) -> str:
        """Why no weights are released for this entry ("" when they are)."""
        if self.weights:
            return ""
        return self.unreleased_reason or (
            "it needs ImageNet backbone weights" if self.needs_backbone_weights else "not trained for release yet"
        )

    @property
    def param_count(self) -> int:
        """Parameters of the model :func:`fashionzoo.build` gives: the released weights' count (a search may have
        chosen other widths, as for ``lenet5-tuned``), else the registered architecture's."""
        return self.weights.metrics["params"] if self.weights else self.params

    @property
    def reported_accuracy(self) -> float | None:
        """What the reference experiment reported for this tag's data set, as a fraction."""
        return self.reported.get(self.tag)

    @property
    def target_accuracy(self) -> float | None:
        """What this tag's checkpoint must reach on the official test file."""
        return self.targets.get(self.tag)

    @property
    def views_per_image(self) -> int:
        """How many views of each image one prediction runs through the network (2 with the test-time flip)."""
        return 2 if self.test_time_flip else 1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        p = self.input_spec
        return (p.height, p.width, p.channels)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description used by ``list`` and ``info``."""
        return {
            "name": self.full_name,
            "model": self.name,
            "tag": self.tag,
            "aliases": list(self.full_aliases),
            "family": self.family,
            "reference": self.reference,
            "description": self.description,
            "params": self.param_count,
            "input_shape": list(self.input_shape),
            "reported_accuracy": self.reported_accuracy,
            "target_accuracy": self.target_accuracy,
            "test_time_flip": self.test_time_flip,
            "weights_available": self.weights is not None,
            "classes": list(self.classes),
            "recipe": dataclasses.asdict(self.recipe),
            "metrics": self.weights.metrics if self.weights else None,
            "photo_calibration": dataclasses.asdict(self.weights.photo_calibration)
            if self.weights and self.weights.photo_calibration
            else None,
        }
