"""Choose a model's photo calibration on the shared development photos and, with --write, record it in weights.json.

Usage: python benchmarks/calibrate_photos.py [--model NAME] [--photos DIR] [--folds N] [--scenes-only] [--write]
(one JSON object)

Every photo is converted as ``predict`` converts it and run through the released ONNX file without calibration. Then
(:func:`fashionzoo.photos.calibration.fit_calibration`) per-class log-probability offsets are fitted on the in-class
studio and worn photos (the phone set is left out: its labels group classes), offsets of their own for photos on a
plain background (on the studio photos, with a mixing matrix: ``MIXED_SCENES``) and on a person (on the worn
photos), and the uncertain threshold is chosen on the shifted probabilities (Youden's J, phone photos of the ten
classes against the hats, shorts and skirts). Reported: balanced accuracy per domain and class before and after, and
a cross-validated estimate (the calibration fitted on one half of the products, scored on the other's photos,
``--folds`` random halvings; phone photos are never fitted on), with and without the scenes' own offsets, and
without mixing matrices. ``--scenes-only``, for weights trained on phone photos: no general offsets (phone photos
are not shifted), only the plain and person scenes' own, and the uncertain threshold the weights already record
(chosen on their held-out senders: the development phone photos may have been trained on).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from fashionzoo.photos.calibration import PhotoCalibration, apply_calibration, fit_calibration
from fashionzoo.photos.convert import convert_file
from fashionzoo.photos.scoring import DOMAINS, Photo, balanced_accuracy, load_manifest
from fashionzoo.publish.release import ReleaseTree, read_manifest, write_manifest
from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.registry.lookup import get_entry
from fashionzoo.runtime.classifier import Classifier

PHOTOS = Path(__file__).resolve().parents[2] / "shared/data/real-photos"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="the real-photos folder (with manifest.csv)")
    parser.add_argument("--folds", type=int, default=10, help="random halvings for the cross-validated estimate")
    parser.add_argument("--scenes-only", action="store_true", help="only the plain and person scenes' offsets")
    parser.add_argument("--write", action="store_true", help="record the calibration in this checkout's weights.json")
    args = parser.parse_args()
    entry = get_entry(args.model)
    classifier = Classifier.from_pretrained(entry.full_name)
    photos = load_manifest(args.photos, classifier.classes)
    pixels, scenes = zip(*(convert_file(photo.file) for photo in photos), strict=True)
    probs = classifier.predict_probs(np.stack(pixels))
    recorded = entry.weights.photo_calibration if entry.weights else None
    options = {"scenes_only": True, "uncertain_below": recorded.uncertain_below} if args.scenes_only else {}
    if args.scenes_only and recorded is None:
        parser.error(f"{entry.full_name} records no photo calibration whose threshold --scenes-only could keep")
    calibration = fit_calibration(photos, probs, scenes, **options)
    report = {
        "model": entry.full_name,
        "calibration": dataclasses.asdict(calibration),
        "before": balanced_accuracy(photos, list(probs.argmax(axis=1))),
        "after": balanced_accuracy(photos, list(apply_calibration(probs, scenes, calibration).argmax(axis=1))),
        "cross_validated": cross_validated(photos, probs, scenes, args.folds, options),
    }
    if args.write:
        tree = ReleaseTree.source_checkout()
        records = read_manifest(tree)
        records[entry.full_name] = dataclasses.replace(records[entry.full_name], photo_calibration=calibration)
        write_manifest(tree, records)
    print(json.dumps(report))


def cross_validated(
    photos: list[Photo], probs: np.ndarray, scenes: tuple[str | None, ...], folds: int, options: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Balanced accuracy per domain without a calibration, with one fitted on the other half of the products, with
    that one's offsets for every photo (no scenes' own) and with one fitted without mixing matrices, averaged over
    ``folds`` random halvings (seeded)."""
    rng = np.random.default_rng(0)
    products, product_of = np.unique([photo.product for photo in photos], return_inverse=True)
    scores: dict[str, dict[str, list[float]]] = {domain: {} for domain in DOMAINS}
    for _ in range(folds):
        half = (rng.permutation(len(products)) < len(products) // 2)[product_of]  # a product's photos on one side
        for fit_on in (half, ~half):
            chosen, held_out = np.flatnonzero(fit_on), np.flatnonzero(~fit_on)
            fit_on_half = [photos[i] for i in chosen], probs[chosen], [scenes[i] for i in chosen]
            fitted = fit_calibration(*fit_on_half, **options)
            variants = {
                "before": None,
                "after": fitted,
                "after_without_scenes": PhotoCalibration(fitted.offsets, fitted.uncertain_below),
                "after_without_mixing": fit_calibration(*fit_on_half, **options, mixed_scenes=()),
            }
            subset, held_scenes = [photos[i] for i in held_out], [scenes[i] for i in held_out]
            for name, calibration in variants.items():
                shifted = apply_calibration(probs[held_out], held_scenes, calibration)
                for domain, report in balanced_accuracy(subset, list(shifted.argmax(axis=1))).items():
                    scores[domain].setdefault(name, []).append(report["balanced_accuracy"])
    return {
        domain: {name: float(np.mean(values)) for name, values in variants.items()}
        | {"after_std": float(np.std(variants["after"]))}
        for domain, variants in scores.items()
        if variants
    }


if __name__ == "__main__":
    main()
