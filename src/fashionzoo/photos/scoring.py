"""Scoring ``predict`` on the shared development set of real photos (``shared/data/real-photos``, see its README).

Three domains: ``studio`` (the product alone on white or light grey), ``worn`` (on a person) and ``phone`` (phone
photos of garments on beds, floors and hangers, with their own class names mapped to the Fashion-MNIST classes
that count as right). The phone set's hats, shorts and skirts are none of the ten classes: they are left out of
the accuracy and used to measure how well a confidence threshold flags what the model cannot know.
The score is the balanced accuracy (the mean of the per-class accuracies) per domain. The photo calibration of a
set of weights (:class:`fashionzoo.photos.calibration.PhotoCalibration`: prior shifts and the uncertain threshold) is
fitted and applied in :mod:`fashionzoo.photos.calibration`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashionzoo.core.errors import FashionZooError

DOMAINS = ("studio", "worn", "phone")
PHONE_CLASSES: dict[str, frozenset[int]] = {
    "dress": frozenset({3}),
    "pants": frozenset({1}),
    "t-shirt": frozenset({0}),
    "shoes": frozenset({5, 7, 9}),
    "outwear": frozenset({4}),
    "longsleeve": frozenset({0, 2, 6}),
    "shirt": frozenset({6}),
}
"""Phone-photo category -> the Fashion-MNIST class ids that count as right (the folder's README)."""
OUT_OF_CLASS = ("hat", "shorts", "skirt")
"""Phone-photo categories that are none of the ten classes."""
SCENE_DOMAINS = {"plain": "studio", "person": "worn"}
"""The photos each scene's own offsets are fitted on: those of this domain found in this scene. Textured backgrounds
(phone photos) keep the offsets fitted on both domains. This beat fitting each scene on its whole domain or on both
domains (chosen on the development photos: docs/photos.md, "Scenes")."""


@dataclass(frozen=True)
class Photo:
    """One labelled photo: its file, domain, class name for the per-class table, the class ids that count as
    right (empty for an out-of-class photo) and the product it shows (the manifest's source and name: a shop's photos
    of one product in several colours share it, a phone photo's names its sender)."""

    file: Path
    domain: str
    category: str
    accepted: frozenset[int]
    product: str = ""


def load_manifest(folder: str | os.PathLike, class_names: Sequence[str]) -> list[Photo]:
    """The photos listed in ``folder/manifest.csv``; studio and worn categories are named after ``class_names``."""
    folder = Path(folder)
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise FashionZooError(f"{manifest}: no such file (point at the real-photos folder, with its manifest.csv)")
    photos = []
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            domain = row["domain"]
            if domain == "phone":
                category = row["category"]
                accepted = PHONE_CLASSES.get(category, frozenset())
                if not accepted and category not in OUT_OF_CLASS:
                    raise FashionZooError(f"{manifest}: unknown phone category {category!r}")
            else:
                class_id = int(row["class_id"])
                category, accepted = class_names[class_id], frozenset({class_id})
            photos.append(Photo(folder / row["file"], domain, category, accepted, f"{row['source']}: {row['name']}"))
    return photos


def balanced_accuracy(photos: Sequence[Photo], predicted: Sequence[int]) -> dict:
    """Per domain: balanced accuracy, per-class accuracy and photo count over the in-class photos.

    ``predicted`` holds one class id per photo (-1 for a photo that could not be read, which counts as wrong).
    """
    report = {}
    for domain in DOMAINS:
        hits: dict[str, list[bool]] = {}
        for photo, class_id in zip(photos, predicted, strict=True):
            if photo.domain == domain and photo.accepted:
                hits.setdefault(photo.category, []).append(class_id in photo.accepted)
        if hits:
            per_class = {name: float(np.mean(values)) for name, values in hits.items()}
            report[domain] = {
                "balanced_accuracy": float(np.mean(list(per_class.values()))),
                "per_class": per_class,
                "n": sum(map(len, hits.values())),
            }
    return report


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Area under the ROC curve of scores meant to be higher for ``positives`` (Mann-Whitney U, ties count 1/2)."""
    pos, neg = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    if not len(pos) or not len(neg):
        raise FashionZooError("AUROC needs at least one positive and one negative score")
    neg_sorted = np.sort(neg)
    below = np.searchsorted(neg_sorted, pos, side="left")
    ties = np.searchsorted(neg_sorted, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def phone_confidence(photos: Sequence[Photo], confidence: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The top probabilities of the phone photos of the ten classes, and of the phone set's hats, shorts and
    skirts: what the uncertain flag has to tell apart."""
    conf = np.asarray(confidence, dtype=np.float64)
    phone = np.array([photo.domain == "phone" for photo in photos])
    inside = np.array([bool(photo.accepted) for photo in photos])
    return conf[phone & inside], conf[phone & ~inside]
