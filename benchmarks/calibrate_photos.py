"""Choose a model's photo calibration on the shared development photos and, with --write, record it in weights.json.

Usage: python benchmarks/calibrate_photos.py [--model NAME] [--photos DIR] [--folds N] [--write]   (one JSON object)

Every photo is converted as ``predict`` converts it and run through the released ONNX file without calibration.
Then (:mod:`fashionzoo.real_photos`) per-class log-probability offsets are fitted on the in-class studio and worn
photos (the phone set is left out: its labels group classes), and the uncertain threshold is chosen on the shifted
probabilities (Youden's J, phone photos of the ten classes against the hats, shorts and skirts). Reported: balanced
accuracy per domain and class before and after, and a cross-validated estimate (offsets fitted on one half of the
photos, scored on the other, ``--folds`` random halvings; phone photos are never fitted on).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from fashionzoo.preprocessing import convert_file
from fashionzoo.real_photos import (
    DOMAINS,
    Photo,
    balanced_accuracy,
    fit_offsets,
    load_manifest,
    youden_threshold,
)
from fashionzoo.registry import DEFAULT_MODEL, PhotoCalibration, get_entry
from fashionzoo.release import ReleaseTree, read_manifest, write_manifest
from fashionzoo.runtime import Classifier, shifted

PHOTOS = Path(__file__).resolve().parents[2] / "shared/data/real-photos"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="the real-photos folder (with manifest.csv)")
    parser.add_argument("--folds", type=int, default=10, help="random halvings for the cross-validated estimate")
    parser.add_argument("--write", action="store_true", help="record the calibration in this checkout's weights.json")
    args = parser.parse_args()
    entry = get_entry(args.model)
    classifier = Classifier.from_pretrained(entry.full_name)
    photos = load_manifest(args.photos, classifier.classes)
    probs = classifier.predict_probs(np.stack([convert_file(photo.file)[0] for photo in photos]))
    offsets = np.round(fit_offsets(photos, probs), 3)
    calibrated = shifted(probs, offsets)
    calibration = PhotoCalibration(tuple(offsets.tolist()), youden_threshold(photos, calibrated.max(axis=1)))
    report = {
        "model": entry.full_name, "calibration": dataclasses.asdict(calibration),
        "before": balanced_accuracy(photos, list(probs.argmax(axis=1))),
        "after": balanced_accuracy(photos, list(calibrated.argmax(axis=1))),
        "cross_validated": cross_validated(photos, probs, args.folds),
    }  # fmt: skip
    if args.write:
        tree = ReleaseTree.source_checkout()
        records = read_manifest(tree)
        records[entry.full_name] = dataclasses.replace(records[entry.full_name], photos=calibration)
        write_manifest(tree, records)
    print(json.dumps(report))


def cross_validated(photos: list[Photo], probs: np.ndarray, folds: int) -> dict[str, dict[str, float]]:
    """Balanced accuracy per domain, without and with offsets fitted on the other half of the photos, averaged
    over ``folds`` random halvings (seeded)."""
    rng = np.random.default_rng(0)
    scores: dict[str, list[tuple[float, float]]] = {domain: [] for domain in DOMAINS}
    for _ in range(folds):
        half = rng.permutation(len(photos)) < len(photos) // 2
        for fit_on in (half, ~half):
            held_out = np.flatnonzero(~fit_on)
            offsets = fit_offsets([photos[i] for i in np.flatnonzero(fit_on)], probs[fit_on])
            subset = [photos[i] for i in held_out]
            before = balanced_accuracy(subset, list(probs[held_out].argmax(axis=1)))
            after = balanced_accuracy(subset, list(shifted(probs[held_out], offsets).argmax(axis=1)))
            for domain in before:
                scores[domain].append((before[domain]["balanced_accuracy"], after[domain]["balanced_accuracy"]))
    return {domain: {"before": float(np.mean([b for b, _ in pairs])), "after": float(np.mean([a for _, a in pairs])),
                     "after_std": float(np.std([a for _, a in pairs]))}
            for domain, pairs in scores.items() if pairs}  # fmt: skip


if __name__ == "__main__":
    main()
