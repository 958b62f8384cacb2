"""Photo calibration: what it is, how it shifts a photo's probabilities, and how it is fitted."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fashionzoo.core.errors import FashionZooError
from fashionzoo.photos.scoring import SCENE_DOMAINS, Photo, phone_confidence

SCENES = ("plain", "person", "textured")
"""What a photo's garment is found on (:func:`fashionzoo.photos.segmentation.find_garment`): a plain background (product
photos), a person wearing it, or a textured background (phone photos on beds and floors)."""
MIXED_SCENES = ("plain",)
"""Scenes whose calibration also mixes the log-probabilities by a matrix, fitted with the scene's offsets. On a plain
background (studio photos, all ten classes shown) the shops file some garments otherwise than the data set (loafers
as sneakers), which a shift per class cannot undo; on a person (worn photos, six classes shown) a matrix would learn
the four never shown, and it gained nothing there (docs/photos.md, issue 30's seventh step)."""
MIXING_L2 = 0.03
"""How strongly a mixing matrix is held to the identity: the weight of its squared distance beside the cross-entropy
(chosen on the studio photos, cross-validated by product: 0.003 to 0.1 within 0.001)."""


@dataclass(frozen=True)
class PhotoCalibration:
    """How ``predict`` reads these weights' probabilities on real photos, chosen on the development photos
    (``benchmarks/calibrate_photos.py``; docs/photos.md).

    ``offsets``, one per class, are added to the log-probabilities of a photo's prediction before they are
    normalised again: a prior shift that undoes the classes a converted photo leans towards (a real T-shirt's
    silhouette reads as a Shirt). ``by_scene`` holds offsets of their own for photos of some :data:`SCENES` (a
    garment on a person leans otherwise than one on a plain background), used instead of ``offsets`` for those.
    ``mixing`` holds, for some scenes, a matrix (classes x classes, near the identity) that multiplies a photo's
    log-probabilities before that scene's offsets are added: matrix scaling (Guo et al. 2017), for classes that
    photos of the scene confuse rather than lean towards. ``uncertain_below`` is the threshold on the shifted top
    probability under which a prediction is marked uncertain. Images already in the data set's 28x28 format are not
    shifted."""

    offsets: tuple[float, ...]
    uncertain_below: float
    by_scene: dict[str, tuple[float, ...]] = field(default_factory=dict)
    mixing: dict[str, tuple[tuple[float, ...], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "offsets", tuple(self.offsets))
        object.__setattr__(self, "by_scene", {scene: tuple(row) for scene, row in self.by_scene.items()})
        object.__setattr__(
            self, "mixing", {scene: tuple(tuple(row) for row in matrix) for scene, matrix in self.mixing.items()}
        )
        values = [self.offsets, *self.by_scene.values(), *(row for matrix in self.mixing.values() for row in matrix)]
        if (
            not 0.0 <= self.uncertain_below <= 1.0
            or not all(math.isfinite(v) for row in values for v in row)
            or any(len(row) != len(self.offsets) for row in values)
            or any(len(matrix) != len(self.offsets) for matrix in self.mixing.values())
        ):
            raise ValueError(
                f"photo calibration {self} is not finite offsets of one length, square matrices of that size and a "
                "threshold in [0, 1]"
            )
        if not set(self.by_scene) | set(self.mixing) <= set(SCENES):
            scenes = sorted(set(self.by_scene) | set(self.mixing))
            raise ValueError(f"photo calibration scenes {scenes} are not among {', '.join(SCENES)}")

    def __hash__(self) -> int:  # the generated hash fails on the dicts
        return hash(
            (
                self.offsets,
                self.uncertain_below,
                tuple(sorted(self.by_scene.items())),
                tuple(sorted(self.mixing.items())),
            )
        )

    def offsets_for(self, scene: str) -> tuple[float, ...]:
        """The offsets for a photo of ``scene``."""
        return self.by_scene.get(scene, self.offsets)

    def to_json(self) -> dict[str, Any]:
        """The JSON form ``weights.json`` and the ONNX metadata hold (``mixing`` only when there is one)."""
        mixing = {"mixing": {scene: [list(row) for row in matrix] for scene, matrix in self.mixing.items()}}
        return {
            "offsets": list(self.offsets),
            "uncertain_below": self.uncertain_below,
            "by_scene": {scene: list(row) for scene, row in self.by_scene.items()},
            **(mixing if self.mixing else {}),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PhotoCalibration:
        return cls(
            tuple(raw["offsets"]), raw["uncertain_below"], dict(raw.get("by_scene", {})), dict(raw.get("mixing", {}))
        )


def fit_offsets(photos: Sequence[Photo], probs: np.ndarray) -> np.ndarray:
    """Per-class log-probability offsets (mean 0) that minimise the cross-entropy of the in-class photos'
    accepted classes, every domain weighing the same and every class the same within its domain (the balanced
    accuracy's weighting), by gradient descent (the loss is convex in the offsets).

    A domain whose labels include groups of classes (the phone set: shoes, long sleeves) is left out: its labels
    cannot tell the classes of a group apart and never show a bag, so offsets fitted on it would learn those gaps
    rather than how photos lean (measured on the development photos: docs/photos.md, "Photo calibration")."""
    return _fit(photos, probs, l2=None, steps=1000)[1]


def fit_mixing(photos: Sequence[Photo], probs: np.ndarray, l2: float = MIXING_L2) -> tuple[np.ndarray, np.ndarray]:
    """A mixing matrix and offsets fitted together as :func:`fit_offsets` fits offsets alone, the matrix held to the
    identity by ``l2`` times its squared distance (the loss stays convex)."""
    return _fit(photos, probs, l2=l2, steps=3000)


def _fit(
    photos: Sequence[Photo],
    probs: np.ndarray,
    l2: float | None,
    steps: int,
    rate: float = 0.5,
    matrix_rate: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fit_offsets` and, with ``l2``, :func:`fit_mixing`: (matrix, offsets); without ``l2`` the matrix stays
    the identity and is not applied."""
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
    logs, identity = _log(seen), np.eye(probs.shape[1])
    offsets, matrix = np.zeros(probs.shape[1]), identity.copy()
    for _ in range(steps):
        q = _from_logs(logs, offsets, None if l2 is None else matrix).astype(np.float64)
        on_accepted = (q * accepted).sum(axis=1, keepdims=True)
        gradient = weights[:, None] * (q - q * accepted / np.maximum(on_accepted, 1e-12))
        offsets -= rate * gradient.sum(axis=0)
        offsets -= offsets.mean()
        if l2 is not None:
            matrix -= matrix_rate * (gradient.T @ logs + l2 * (matrix - identity))
    return matrix, offsets


def fit_calibration(
    photos: Sequence[Photo],
    probs: np.ndarray,
    scenes: Sequence[str | None],
    *,
    scenes_only: bool = False,
    uncertain_below: float | None = None,
    mixed_scenes: Sequence[str] = MIXED_SCENES,
) -> PhotoCalibration:
    """The photo calibration of weights whose uncalibrated probabilities on ``photos`` (each of ``scenes``) are
    ``probs``: offsets fitted on every in-class studio and worn photo; offsets of their own for the scenes of
    :data:`SCENE_DOMAINS` that have such photos, where a class those photos never show (worn photos show no shoes or
    bags) keeps its standing against the others from the general offsets, instead of being pushed down for its
    absence; for the ``mixed_scenes`` whose photos show every class, a mixing matrix fitted with their offsets
    (:func:`fit_mixing`); all rounded to 3 decimals. ``scenes_only`` keeps the general offsets at zero (weights
    trained on phone photos need no shift for them). The uncertain threshold is ``uncertain_below`` when given
    (chosen elsewhere, as photo weights' is on their held-out senders), else chosen on the shifted probabilities
    (:func:`youden_threshold`)."""
    general = np.zeros(probs.shape[1]) if scenes_only else fit_offsets(photos, probs)
    by_scene, mixing = {}, {}
    for scene, domain in SCENE_DOMAINS.items():
        chosen = [
            i
            for i, (photo, seen) in enumerate(zip(photos, scenes, strict=True))
            if photo.domain == domain and seen == scene and photo.accepted
        ]
        if not chosen:
            continue
        shown = sorted({k for i in chosen for k in photos[i].accepted})
        unseen = [k for k in range(probs.shape[1]) if k not in shown]
        if scene in mixed_scenes and not unseen:
            matrix, own = fit_mixing([photos[i] for i in chosen], probs[chosen])
            mixing[scene] = tuple(tuple(row) for row in np.round(matrix, 3).tolist())
        else:
            own = fit_offsets([photos[i] for i in chosen], probs[chosen])
            own[unseen] = general[unseen] - np.mean(general[shown] - own[shown])
        by_scene[scene] = tuple(np.round(own, 3).tolist())
    offsets = tuple(np.round(general, 3).tolist())
    if uncertain_below is None:
        shifted_probs = apply_calibration(probs, scenes, PhotoCalibration(offsets, 0.5, by_scene, mixing))
        uncertain_below = youden_threshold(photos, shifted_probs.max(1))
    return PhotoCalibration(offsets, uncertain_below, by_scene, mixing)


def youden_threshold(photos: Sequence[Photo], confidence: Sequence[float], tie: float = 0.01) -> float:
    """The threshold on the top probability, in steps of 0.05, that best separates the in-class phone photos from
    the out-of-class ones (Youden's J: in-class kept minus out-of-class kept). Of those within ``tie`` of the best
    J (a few photos), the lowest, which flags the fewest photos of the ten classes."""
    positives, negatives = phone_confidence(photos, confidence)
    if not len(positives) or not len(negatives):
        raise FashionZooError("choosing the uncertain threshold needs in-class and out-of-class phone photos")
    return youden_cut(positives, negatives, tie)


def youden_cut(positives: np.ndarray, negatives: np.ndarray, tie: float = 0.01) -> float:
    """The threshold, in steps of 0.05, that keeps most ``positives`` and fewest ``negatives`` (Youden's J); of
    those within ``tie`` of the best J, the lowest. Both must be non-empty."""
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    youden = np.array([(positives >= t).mean() - (negatives >= t).mean() for t in grid])
    return float(grid[np.flatnonzero(youden >= youden.max() - tie)[0]])


def apply_calibration(
    probs: np.ndarray, scenes: str | Sequence[str | None] | None, calibration: PhotoCalibration | None
) -> np.ndarray:
    """``probs`` (N, classes) with the rows of photos shifted by ``calibration``'s offsets for their scene
    (``scenes``: one for all rows, or one per row, as :func:`convert_file` gives them); the data set's own images
    (scene None), and everything when ``calibration`` is None, are left as they are."""
    rows = [scenes] * len(probs) if scenes is None or isinstance(scenes, (str, bool)) else list(scenes)
    if len(rows) != len(probs):
        raise FashionZooError(f"{len(rows)} scenes for {len(probs)} images: give one scene per image, or one for all")
    unknown = [scene for scene in rows if scene is not None and scene not in SCENES]
    if unknown:
        raise FashionZooError(
            f"unknown scene {unknown[0]!r} (use one of {', '.join(SCENES)}, as convert_image "
            "returns it, or None for an image in the data set's format)"
        )
    if calibration is None or all(scene is None for scene in rows):
        return probs
    probs = np.array(probs, dtype=np.float32)
    for scene in {row for row in rows if row is not None}:
        chosen = np.array([row == scene for row in rows])
        probs[chosen] = shifted(probs[chosen], calibration.offsets_for(scene), calibration.mixing.get(scene))
    return probs


def shifted(
    probs: np.ndarray, offsets: Sequence[float], mixing: Sequence[Sequence[float]] | np.ndarray | None = None
) -> np.ndarray:
    """Probabilities (N, classes) with their logarithms multiplied by the ``mixing`` matrix (when given) and
    ``offsets`` added, normalised again (float32)."""
    return _from_logs(_log(probs), offsets, mixing)


def _from_logs(
    logs: np.ndarray, offsets: Sequence[float] | np.ndarray, mixing: Sequence[Sequence[float]] | np.ndarray | None
) -> np.ndarray:
    """:func:`shifted` from the log-probabilities (float64) themselves: the fit takes them once, not once a step."""
    logits = logs if mixing is None else logs @ np.asarray(mixing, dtype=np.float64).T
    logits = logits + np.asarray(offsets, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _log(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities (float64), a probability of 0 read as 1e-12."""
    return np.log(np.maximum(np.asarray(probs, dtype=np.float64), 1e-12))
