"""A pool of labelled real photos that weights learn from (:data:`fashionzoo.data.datasets.CLOTHING_PHOTOS`): each
photo converted by ``predict``'s own conversion, so a model learns what that conversion makes of real photos; a split
that keeps each sender's photos on one side; and the figures of a model on held-out photos."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.core.files import home_dir, sha256_file
from fashionzoo.data.datasets import PhotoPool
from fashionzoo.photos.calibration import youden_cut
from fashionzoo.photos.convert import convert_file
from fashionzoo.photos.scoring import auroc

PHONE_LABELS = ("Dress", "Longsleeve", "Outwear", "Pants", "Shirt", "Shoes", "T-Shirt")
"""The pool's labels that are the development set's phone classes: their balanced accuracy is the phone figure."""


@dataclass(frozen=True)
class PoolPhotos:
    """Photos of a pool, converted: one row each."""

    pixels: np.ndarray  # N x 28 x 28 uint8, as ``convert_file`` made them
    allowed: np.ndarray  # N x classes bool: the classes each photo's label allows (a row of False: none of them)
    labels: tuple[str, ...]
    senders: tuple[str, ...]
    scenes: tuple[str | None, ...]  # what each garment was found on, as ``convert_file`` says
    files: tuple[str, ...]  # relative to the pool's folder

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, rows: Sequence[int]) -> PoolPhotos:
        """The photos at ``rows``, in that order."""
        keep = np.asarray(rows, dtype=np.int64)
        return PoolPhotos(
            self.pixels[keep],
            self.allowed[keep],
            tuple(self.labels[row] for row in rows),
            tuple(self.senders[row] for row in rows),
            tuple(self.scenes[row] for row in rows),
            tuple(self.files[row] for row in rows),
        )


def pool_folder(pool: PhotoPool) -> Path:
    """The pool's folder: ``$<pool.env_var>``, else ``$FASHIONZOO_HOME/datasets/<pool.name>``."""
    path = Path(os.environ.get(pool.env_var) or home_dir() / "datasets" / pool.name).expanduser()
    if not (path / pool.manifest).is_file():
        raise FashionZooError(
            f"{path}: no {pool.manifest} (the {pool.name} photo pool these weights train on); set {pool.env_var} "
            "to its folder"
        )
    return path


def read_pool(pool: PhotoPool, limit: int | None = None, seed: int = 0) -> tuple[PoolPhotos, dict[str, str]]:
    """Every labelled photo of ``pool`` (``limit`` of them drawn with ``seed``, with ``limit``), converted as
    ``predict`` converts it, and what was read: the SHA-256 of the manifest and of the photo files."""
    folder = pool_folder(pool)
    try:
        with open(folder / pool.manifest, newline="", encoding="utf-8") as handle:
            rows = sorted((row for row in csv.DictReader(handle) if row["label"] in pool.label_classes), key=_file)
    except (OSError, UnicodeDecodeError, KeyError, csv.Error) as error:
        raise FashionZooError(f"{folder / pool.manifest}: not the {pool.name} manifest ({reason(error)})") from None
    if limit:
        rows = [rows[index] for index in sorted(np.random.default_rng(seed).permutation(len(rows))[:limit])]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as threads:
        converted = list(threads.map(lambda row: _converted(folder / row["file"]), rows))
    allowed = np.zeros((len(rows), 10), dtype=bool)
    for index, row in enumerate(rows):
        allowed[index, sorted(pool.label_classes[row["label"]])] = True
    listing = "".join(f"{row['file']}\t{sha}\n" for row, (_, _, sha) in zip(rows, converted, strict=True))
    photos = PoolPhotos(
        np.stack([pixels for pixels, _, _ in converted]) if rows else np.zeros((0, 28, 28), np.uint8),
        allowed,
        tuple(row["label"] for row in rows),
        tuple(row["sender_id"] for row in rows),
        tuple(scene for _, scene, _ in converted),
        tuple(row["file"] for row in rows),
    )
    manifest, files = pool.recorded_names
    return photos, {manifest: sha256_file(folder / pool.manifest), files: hashlib.sha256(listing.encode()).hexdigest()}


def _file(row: dict[str, str]) -> str:
    return row["file"]


def _converted(file: Path) -> tuple[np.ndarray, str | None, str]:
    """A photo as ``predict`` converts it (pixels and scene), and the SHA-256 of its file."""
    pixels, scene = convert_file(file)
    return pixels, scene, sha256_file(file)


def split_by_sender(photos: PoolPhotos, val_fraction: float, seed: int) -> tuple[PoolPhotos, PoolPhotos]:
    """Training and validation photos with no sender on both sides: ``val_fraction`` of the senders, drawn with
    ``seed``, hold out all their photos (one person's photos share a room, a bed and a camera)."""
    senders = sorted(set(photos.senders))
    count = round(len(senders) * val_fraction)
    if not 0 < count < len(senders):
        raise FashionZooError(
            f"{len(senders)} senders cannot be split {val_fraction:g} for validation; read more photos "
            "(a larger --limit)"
        )
    held = set(np.random.default_rng(seed).permutation(senders)[:count].tolist())
    rows = range(len(photos))
    return (
        photos.rows([row for row in rows if photos.senders[row] not in held]),
        photos.rows([row for row in rows if photos.senders[row] in held]),
    )


def score(photos: PoolPhotos, probs: np.ndarray) -> dict[str, Any]:
    """A model's figures on held-out photos: accuracy per label (right when the top class is one the label allows),
    the balanced accuracy over :data:`PHONE_LABELS` and over every label of the ten classes, AUROC of the top
    probability for photos of the ten classes against photos of none and for right against wrong, and the uncertain
    threshold that best separates the first pair (Youden's J; the lowest within 0.01 of the best)."""
    top, predicted = probs.max(axis=1), probs.argmax(axis=1)
    inside = photos.allowed.any(axis=1)
    right = photos.allowed[np.arange(len(photos)), predicted] & inside
    labels = np.array(photos.labels)
    per_label = {
        label: round(float(right[labels == label].mean()), 4) for label in sorted(set(labels[inside].tolist()))
    }
    figures: dict[str, Any] = {
        "n": len(photos),
        "senders": len(set(photos.senders)),
        "phone_balanced_accuracy": round(float(np.mean([per_label[k] for k in PHONE_LABELS if k in per_label])), 4),
        "balanced_accuracy": round(float(np.mean(list(per_label.values()))), 4),
        "per_label": per_label,
    }
    if right.any() and (inside & ~right).any():
        figures["auroc_right_vs_wrong"] = round(auroc(top[right], top[inside & ~right]), 4)
    if (~inside).any():
        figures["auroc_in_vs_out_of_class"] = round(auroc(top[inside], top[~inside]), 4)
        figures["uncertain_below"] = youden_cut(top[inside], top[~inside])
    return figures
