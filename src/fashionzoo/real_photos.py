"""Scoring ``predict`` on the shared development set of real photos (``shared/data/real-photos``, see its README).

Three domains: ``studio`` (the product alone on white or light grey), ``worn`` (on a person) and ``phone`` (phone
photos of garments on beds, floors and hangers, with their own class names mapped to the Fashion-MNIST classes
that count as right). The phone set's hats, shorts and skirts are none of the ten classes: they are left out of
the accuracy and used to measure how well a confidence threshold flags what the model cannot know.
The score is the balanced accuracy (the mean of the per-class accuracies) per domain. The photo calibration of a
set of weights (:class:`fashionzoo.registry.PhotoCalibration`: prior shifts and the uncertain threshold) is
fitted here (:func:`fit_calibration`); :func:`fashionzoo.runtime.calibrated` applies it.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashionzoo._files import FashionZooError
from fashionzoo.registry import PhotoCalibration
from fashionzoo.runtime import calibrated, shifted

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
"""The photos each scene's own offsets are fitted on: those of this domain found in this scene (1,057 of the 1,078
studio photos are plain, 453 of the 660 worn ones show their wearer's face). Textured backgrounds (phone photos;
5 of the 1,738 studio and worn photos) keep the offsets fitted on both domains. Cross-validated with the default
model (5 halvings, studio / worn / phone): 0.807 / 0.695 / 0.611, against 0.806 / 0.687 / 0.610 fitting each scene on
its whole domain and 0.760 / 0.643 (flagship) on that scene's photos of both domains, where the 206 worn photos
without a face weigh as much as the 1,057 studio ones."""


@dataclass(frozen=True)
class Photo:
    """One labelled photo: its file, domain, class name for the per-class table and the class ids that count as
    right (empty for an out-of-class photo)."""

    file: Path
    domain: str
    category: str
    accepted: frozenset[int]


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
            photos.append(Photo(folder / row["file"], domain, category, accepted))
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
            report[domain] = {"balanced_accuracy": float(np.mean(list(per_class.values()))),
                              "per_class": per_class, "n": sum(map(len, hits.values()))}  # fmt: skip
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


def fit_offsets(photos: Sequence[Photo], probs: np.ndarray, steps: int = 1000, rate: float = 0.5) -> np.ndarray:
    """Per-class log-probability offsets (mean 0) that minimise the cross-entropy of the in-class photos'
    accepted classes, every domain weighing the same and every class the same within its domain (the balanced
    accuracy's weighting), by gradient descent (the loss is convex in the offsets).

    A domain whose labels include groups of classes (the phone set: shoes, long sleeves) is left out: its labels
    cannot tell the classes of a group apart and never show a bag, so offsets fitted on it would learn those gaps
    (Sneaker and Pullover -4, Bag far down) rather than how photos lean."""
    grouped = {photo.domain for photo in photos if len(photo.accepted) > 1}
    keep = [bool(photo.accepted) and photo.domain not in grouped for photo in photos]
    inside = [photo for photo, kept in zip(photos, keep, strict=True) if kept]
    if not inside:
        raise FashionZooError("fitting a photo calibration needs photos labelled with single classes")
    per_class = Counter((photo.domain, photo.category) for photo in inside)
    classes_per_domain = Counter(domain for domain, _ in per_class)
    weights = np.array([1.0 / (per_class[p.domain, p.category] * classes_per_domain[p.domain]) for p in inside])
    weights /= weights.sum()
    accepted = np.zeros((len(inside), probs.shape[1]), dtype=bool)
    for row, photo in enumerate(inside):
        accepted[row, list(photo.accepted)] = True
    seen = np.asarray(probs)[keep]
    offsets = np.zeros(probs.shape[1])
    for _ in range(steps):
        q = shifted(seen, offsets).astype(np.float64)
        on_accepted = (q * accepted).sum(axis=1, keepdims=True)
        offsets -= rate * (weights[:, None] * (q - q * accepted / np.maximum(on_accepted, 1e-12))).sum(axis=0)
        offsets -= offsets.mean()
    return offsets


def fit_calibration(photos: Sequence[Photo], probs: np.ndarray, scenes: Sequence[str | None]) -> PhotoCalibration:
    """The photo calibration of weights whose uncalibrated probabilities on ``photos`` (each of ``scenes``) are
    ``probs``: offsets fitted on every in-class studio and worn photo; offsets of their own for the scenes of
    :data:`SCENE_DOMAINS` that have such photos, where a class those photos never show (worn photos show no shoes or
    bags) keeps its standing against the others from the general offsets, instead of being pushed down for its
    absence; all rounded to 3 decimals. The uncertain threshold is chosen on the shifted probabilities
    (:func:`youden_threshold`)."""
    general = fit_offsets(photos, probs)
    by_scene = {}
    for scene, domain in SCENE_DOMAINS.items():
        chosen = [i for i, (photo, seen) in enumerate(zip(photos, scenes, strict=True))
                  if photo.domain == domain and seen == scene and photo.accepted]  # fmt: skip
        if not chosen:
            continue
        own = fit_offsets([photos[i] for i in chosen], probs[chosen])
        shown = sorted({k for i in chosen for k in photos[i].accepted})
        unseen = [k for k in range(probs.shape[1]) if k not in shown]
        own[unseen] = general[unseen] - np.mean(general[shown] - own[shown])
        by_scene[scene] = tuple(np.round(own, 3).tolist())
    offsets = tuple(np.round(general, 3).tolist())
    threshold = youden_threshold(photos, calibrated(probs, scenes, PhotoCalibration(offsets, 0.5, by_scene)).max(1))
    return PhotoCalibration(offsets, threshold, by_scene)


def phone_confidence(photos: Sequence[Photo], confidence: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The top probabilities of the phone photos of the ten classes, and of the phone set's hats, shorts and
    skirts: what the uncertain flag has to tell apart."""
    conf = np.asarray(confidence, dtype=np.float64)
    phone = np.array([photo.domain == "phone" for photo in photos])
    inside = np.array([bool(photo.accepted) for photo in photos])
    return conf[phone & inside], conf[phone & ~inside]


def youden_threshold(photos: Sequence[Photo], confidence: Sequence[float], tie: float = 0.01) -> float:
    """The threshold on the top probability, in steps of 0.05, that best separates the in-class phone photos from
    the out-of-class ones (Youden's J: in-class kept minus out-of-class kept). Of those within ``tie`` of the best
    J (a few photos), the lowest, which flags the fewest photos of the ten classes."""
    positives, negatives = phone_confidence(photos, confidence)
    if not len(positives) or not len(negatives):
        raise FashionZooError("choosing the uncertain threshold needs in-class and out-of-class phone photos")
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    youden = np.array([(positives >= t).mean() - (negatives >= t).mean() for t in grid])
    return float(grid[np.flatnonzero(youden >= youden.max() - tie)[0]])
